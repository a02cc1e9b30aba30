"""Dispatch picks exactly what an exhaustive geopy scan over every engineer would pick."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from server.aftersales import engineers
from server.aftersales.dispatch import DispatchRules, cell_of, exhaustive_choice, nearest_engineer, on_shift
from server.aftersales.models import Engineer
from server.db import transaction
from server.extensions import db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _populate(rng: random.Random, count: int, centre=(31.23, 121.47), spread=0.6) -> None:
    for n in range(count):
        lat, lon = centre[0] + rng.uniform(-spread, spread), centre[1] + rng.uniform(-spread, spread)
        engineer = engineers.create_engineer(
            f"E{n}", rng.sample(["hvac", "elevator", "it"], rng.randint(1, 2)), lat, lon,
            shift_start=rng.choice(["00:00", "08:00", "20:00"]), shift_end=rng.choice(["00:00", "17:00", "06:00"]),
            status=rng.choice(["available"] * 4 + ["off", "break"]))
        engineer.open_jobs = rng.choice([0, 0, 1, 2, 3])
        if rng.random() < 0.7:  # a recent or a stale ping
            engineer.last_lat, engineer.last_lon = lat + rng.uniform(-0.05, 0.05), lon + rng.uniform(-0.05, 0.05)
            engineer.last_seen_at = NOW - timedelta(minutes=rng.choice([1, 5, 20, 45, 300]))
            engineer.pos_cell = cell_of(engineer.last_lat, engineer.last_lon)


@pytest.mark.parametrize("count, spread", [(400, 0.6), (60, 2.0)])  # dense city, sparse region
def test_indexed_dispatch_equals_the_exhaustive_scan(ctx, count, spread):
    rng = random.Random(count)
    with transaction():
        _populate(rng, count, spread=spread)
    rows = db.session.execute(select(Engineer)).scalars().all()
    checked = found = 0
    for _ in range(150):
        lat, lon = 31.23 + rng.uniform(-spread, spread), 121.47 + rng.uniform(-spread, spread)
        rules = DispatchRules(skill=rng.choice(["hvac", "elevator", "it"]), max_distance_km=rng.choice([30, 150]))
        exclude = frozenset(rng.sample([r.id for r in rows], 5))
        expected = exhaustive_choice(lat, lon, rows, rules, NOW, exclude)
        got = nearest_engineer(db.session, lat, lon, rules, NOW, exclude)
        assert (got.id if got else None) == (expected.id if expected else None)
        checked += 1
        found += expected is not None
    assert checked == 150 and found > 50  # most requests do find someone


def test_ties_go_to_the_engineer_with_fewer_open_jobs(ctx):
    with transaction():
        busy = engineers.create_engineer("Busy", ["hvac"], 31.3, 121.5)
        idle = engineers.create_engineer("Idle", ["hvac"], 31.3, 121.5)
        busy.open_jobs, idle.open_jobs = 2, 1
    chosen = nearest_engineer(db.session, 31.31, 121.5, DispatchRules(skill="hvac"), NOW)
    assert chosen.id == idle.id


def test_shifts_including_overnight_and_all_day():
    at = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert on_shift("22:00", "06:00", at, "UTC") and not on_shift("08:00", "17:00", at, "UTC")
    assert on_shift("00:00", "00:00", at, "UTC")
    assert on_shift("07:00", "17:00", at, "Asia/Shanghai")  # 07:30 the next morning in Shanghai
    assert not on_shift("08:00", "17:00", at, "Asia/Shanghai")
