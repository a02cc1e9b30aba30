"""Timer delivery: N pending timers (real rows, created by starting instances of a process that waits
until its ``due_at``) all coming due inside one minute, delivered by the product's own poller and two
RQ worker processes (``server.cli poll-timers`` / ``server.cli worker``). Reports lateness (fired − due)
p50 / p99 / max, fires per second, and checks that none was lost and none fired twice. The baseline,
measured in the same run: timers of the same process fired in-process by ``fire_timer`` in one loop
(no poller, no RQ, no Redis) — the ratio is delivered fires/s over that."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from server.jobs.redis_server import EmbeddedRedis

from .pg import ThrowawayPostgres

ROOT = Path(__file__).resolve().parent.parent
BPMN = Path(__file__).parent / "workflows" / "timer_bench.bpmn"
TARGET_P99_SECONDS = 1.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * share) - 1))]


def _start_many(app, count: int, first_due, spread_seconds: float) -> list[int]:
    """Start ``count`` instances whose timers fall evenly over ``spread_seconds`` from ``first_due``."""
    from server.db import transaction
    from server.processes import services

    ids = []
    with app.app_context():
        for n in range(count):
            due = first_due + timedelta(seconds=spread_seconds * n / max(1, count))
            with transaction():
                view = services.start_instance("timer_bench", {"due_at": due.isoformat()})
            ids.append(view["instance"].id)
    return ids


def _baseline(app, count: int = 300) -> float:
    """Fires per second of ``fire_timer`` called in-process on already-due timers."""
    from server.db import transaction, utcnow
    from server.processes import services
    from server.processes.models import Timer

    instance_ids = _start_many(app, count, utcnow() + timedelta(seconds=1), 0)
    time.sleep(1.5)
    with app.app_context():
        from server.extensions import db

        timer_ids = db.session.scalars(select(Timer.id).where(Timer.instance_id.in_(instance_ids))).all()
        started = time.perf_counter()
        for timer_id in timer_ids:
            with transaction():
                services.fire_timer(timer_id)
        elapsed = time.perf_counter() - started
        assert db.session.scalar(select(func.count()).select_from(Timer).where(
            Timer.instance_id.in_(instance_ids), Timer.fired_at.is_(None))) == 0
    return len(timer_ids) / elapsed


def _children(env: dict, workers: int) -> list[subprocess.Popen]:
    cli = [sys.executable, "-m", "server.cli"]
    procs = [subprocess.Popen([*cli, "poll-timers"], env=env, cwd=ROOT, start_new_session=True)]
    procs += [subprocess.Popen([*cli, "worker", "--name", f"bench-{n}"], env=env, cwd=ROOT, start_new_session=True)
              for n in range(workers)]
    return procs


def run_lane(lane: str, count: int, spread: float, workers: int, poll_seconds: float) -> dict:
    """One lane: create the timers, start poller + workers, wait for every timer, measure."""
    data_dir = tempfile.mkdtemp(prefix="flowdesk-timers-")
    pg = redis = None
    procs: list[subprocess.Popen] = []
    try:
        url = f"sqlite:///{data_dir}/bench.db"
        if lane == "postgresql":
            url = os.environ.get("DATABASE_URL") or (pg := ThrowawayPostgres()).start()
        redis = EmbeddedRedis(data_dir, name="timers-redis")
        env = dict(os.environ, FLOWDESK_DATA_DIR=data_dir, SECRET_KEY="bench", LOG_LEVEL="WARNING",
                   FLOWDESK_LOG_FORMAT="text",
                   DATABASE_URL=url, REDIS_URL=redis.start(), FLOWDESK_TIMER_POLL_SECONDS=str(poll_seconds))
        os.environ.update({k: env[k] for k in ("FLOWDESK_DATA_DIR", "DATABASE_URL", "REDIS_URL", "SECRET_KEY")})
        subprocess.run([sys.executable, "-m", "server.cli", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from server.app import create_app
        from server.db import transaction, utcnow
        from server.extensions import db
        from server.processes import services
        from server.processes.models import AuditEvent, Timer

        app = create_app({"LOG_LEVEL": "WARNING"})
        with app.app_context(), transaction():
            services.deploy_bundle({BPMN.name: BPMN.read_bytes()}, source="bench")
        baseline = _baseline(app)
        # Creation runs at a few hundred per second: the first timer falls due once all exist.
        creation_budget = count / 80 + 10
        first_due = utcnow() + timedelta(seconds=creation_budget)
        created = time.perf_counter()
        instance_ids = _start_many(app, count, first_due, spread)
        created = time.perf_counter() - created
        procs = _children(env, workers)
        deadline = time.monotonic() + creation_budget + spread + 300
        with app.app_context():
            bench = Timer.instance_id.in_(instance_ids)
            while time.monotonic() < deadline:
                pending = db.session.scalar(select(func.count()).select_from(Timer).where(
                    bench, Timer.fired_at.is_(None)))
                db.session.rollback()
                if pending == 0:
                    break
                time.sleep(1)
            rows = db.session.execute(select(Timer.id, Timer.due_at, Timer.fired_at).where(bench)).all()
            audit = db.session.execute(
                select(AuditEvent.data).where(AuditEvent.event == "timer_fired",
                                              AuditEvent.instance_id >= min(instance_ids))).all()
        fired = [r for r in rows if r.fired_at is not None]
        lateness = [max(0.0, (r.fired_at - r.due_at).total_seconds()) for r in fired]
        fired_per_timer: dict[int, int] = {}
        for (data,) in audit:
            fired_per_timer[data["timer_id"]] = fired_per_timer.get(data["timer_id"], 0) + 1
        first, last = min(r.fired_at for r in fired), max(r.fired_at for r in fired)
        rate = len(fired) / max(0.001, (last - first).total_seconds())
        return {"lane": lane, "timers": count, "spread_seconds": spread, "workers": workers,
                "poll_seconds": poll_seconds, "creation_seconds": round(created, 1),
                "baseline_fires_per_second": round(baseline, 1), "fires_per_second": round(rate, 1),
                "ratio": round(rate / baseline, 3), "fired": len(fired), "lost": count - len(fired),
                "fired_twice": sum(1 for n in fired_per_timer.values() if n > 1),
                "lateness_p50_s": round(statistics.median(lateness), 3),
                "lateness_p99_s": round(_percentile(lateness, 0.99), 3),
                "lateness_max_s": round(max(lateness), 3), "target_p99_s": TARGET_P99_SECONDS}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()


def run(lanes: list[str], count: int, spread: float, workers: int, poll_seconds: float) -> list[dict]:
    """Every lane; print and return the rows."""
    rows = []
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; command: {' '.join(sys.argv)}")
    for lane in lanes:
        row = run_lane(lane, count, spread, workers, poll_seconds)
        rows.append(row)
        verdict = "meets" if row["lateness_p99_s"] <= TARGET_P99_SECONDS else "MISSES"
        print(f"{lane:<10} {count} timers over {spread:g} s, {workers} workers, poll {poll_seconds:g} s: "
              f"baseline (in-process fire_timer) {row['baseline_fires_per_second']}/s, delivered "
              f"{row['fires_per_second']}/s, ratio {row['ratio']}; lateness p50 {row['lateness_p50_s']} s, "
              f"p99 {row['lateness_p99_s']} s, max {row['lateness_max_s']} s "
              f"({verdict} p99 ≤ {TARGET_P99_SECONDS:g} s); lost {row['lost']}, fired twice {row['fired_twice']}",
              flush=True)
    return rows
