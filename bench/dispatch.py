"""Dispatch decision time for 1k / 10k / 100k engineers: the indexed search the
product uses (SQL over grid-cell ranges + exact geopy ranking) against an
exhaustive geopy scan over every engineer, measured in the same run, and a
check that both pick the same engineer."""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from server.aftersales.dispatch import COLUMNS, DispatchRules, cell_of, exhaustive_choice, nearest_engineer
from server.aftersales.models import Engineer

CENTRE = (31.23, 121.47)
SPREAD = 2.0  # degrees either way: a 450 km × 400 km service region
SKILLS = ["hvac", "elevator", "medical", "it"]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TARGET_P99_MS, TARGET_SPEEDUP = 5.0, 100.0


def _engineers(count: int, rng: random.Random):
    for n in range(count):
        lat, lon = CENTRE[0] + rng.uniform(-SPREAD, SPREAD), CENTRE[1] + rng.uniform(-SPREAD, SPREAD)
        fresh = rng.random() < 0.7
        plat, plon = lat + rng.uniform(-0.05, 0.05), lon + rng.uniform(-0.05, 0.05)
        yield {"name": f"E{n}", "skills": "," + ",".join(rng.sample(SKILLS, rng.randint(1, 2))) + ",",
               "home_lat": lat, "home_lon": lon, "home_cell": cell_of(lat, lon),
               "shift_start": rng.choice(["00:00", "06:00", "22:00"]), "shift_end": rng.choice(["00:00", "18:00"]),
               "status": rng.choice(["available"] * 4 + ["off"]), "open_jobs": rng.choice([0, 0, 1, 2, 3]),
               "last_lat": plat if fresh else None, "last_lon": plon if fresh else None,
               "last_seen_at": NOW - timedelta(minutes=rng.choice([2, 10, 25])) if fresh else None,
               "pos_cell": cell_of(plat, plon) if fresh else None}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def run(sizes: list[int], requests: int, scan_seconds: float, database_url: str | None = None) -> list[dict]:
    """Measure each size; print and return one row per size. The exhaustive scan answers the same
    requests until ``scan_seconds`` are spent (at least 10): at 100k engineers it takes seconds each."""
    os.environ.setdefault("FLOWDESK_DATA_DIR", tempfile.mkdtemp(prefix="flowdesk-bench-dispatch-"))
    from flask_migrate import upgrade

    from server.app import create_app
    from server.extensions import db

    rows_out = []
    for size in sizes:
        url = database_url or f"sqlite:///{tempfile.mkdtemp(prefix='flowdesk-dispatch-')}/dispatch.db"
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
        with app.app_context():
            if url.startswith("postgresql"):
                from flask_migrate import downgrade

                downgrade(revision="base")
            upgrade()
            rng = random.Random(size)
            batch = list(_engineers(size, rng))
            for start in range(0, size, 5000):
                db.session.execute(insert(Engineer), batch[start:start + 5000])
            db.session.commit()
            everyone = db.session.execute(select(*COLUMNS)).all()
            asks = [(CENTRE[0] + rng.uniform(-SPREAD, SPREAD), CENTRE[1] + rng.uniform(-SPREAD, SPREAD),
                     DispatchRules(skill=rng.choice(SKILLS))) for _ in range(requests)]
            indexed_ms, picks = [], []
            for lat, lon, rules in asks[:50]:  # warm-up (statement cache, pages)
                nearest_engineer(db.session, lat, lon, rules, NOW)
            for lat, lon, rules in asks:
                started = time.perf_counter()
                chosen = nearest_engineer(db.session, lat, lon, rules, NOW)
                indexed_ms.append((time.perf_counter() - started) * 1000)
                picks.append(chosen.id if chosen else None)
            scan_ms, same = [], 0
            budget_end = time.perf_counter() + scan_seconds
            for (lat, lon, rules), pick in zip(asks, picks, strict=True):
                if len(scan_ms) >= 10 and time.perf_counter() > budget_end:
                    break
                started = time.perf_counter()
                reference = exhaustive_choice(lat, lon, everyone, rules, NOW)
                scan_ms.append((time.perf_counter() - started) * 1000)
                same += (reference.id if reference else None) == pick
            sample = len(scan_ms)
            db.session.remove()
            db.engine.dispose()
        row = {"engineers": size, "requests": requests, "indexed_p50_ms": round(statistics.median(indexed_ms), 3),
               "indexed_p99_ms": round(_percentile(indexed_ms, 0.99), 3),
               "indexed_mean_ms": round(statistics.fmean(indexed_ms), 3),
               "scan_mean_ms": round(statistics.fmean(scan_ms), 1), "scan_requests": sample,
               "same_choice": f"{same}/{sample}"}
        row["speedup"] = round(row["scan_mean_ms"] / row["indexed_mean_ms"], 1)
        rows_out.append(row)
        verdict = ""
        if size >= 100_000:  # the targets are set at 100k engineers
            met = row["indexed_p99_ms"] <= TARGET_P99_MS and row["speedup"] >= TARGET_SPEEDUP
            verdict = f"  ({'meets' if met else 'MISSES'} target p99 ≤ {TARGET_P99_MS:g} ms, ≥ {TARGET_SPEEDUP:g}×)"
        print(f"dispatch  engineers={size:<7} indexed p50 {row['indexed_p50_ms']:.2f} ms  p99 "
              f"{row['indexed_p99_ms']:.2f} ms  exhaustive geopy scan {row['scan_mean_ms']:.1f} ms  "
              f"speed-up {row['speedup']:.0f}×  same choice {row['same_choice']}{verdict}", flush=True)
    return rows_out
