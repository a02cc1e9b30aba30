"""Choosing the engineer for a job: the nearest eligible one by geopy's geodesic
distance, ties broken by open jobs then id — exactly what an exhaustive scan
would pick, but reading only the rows near the job.

How it stays exact and fast:

* every engineer row carries the grid cell (``CELL_DEGREES`` squares) of its
  last known position and of its home base, both indexed together with the
  status, so a ring of cells around the job is one indexed query;
* rings grow outwards; candidates are ordered by the cheap haversine distance
  and the geodesic is computed only while ``HAVERSINE_SLACK × haversine`` of
  the next one could still beat the best so far (the sphere and the WGS84
  ellipsoid differ by well under 1 %);
* the search stops when no point outside the searched square can be closer
  than the best found: the distance from the job to the square's edges is a
  lower bound for everything outside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from geopy.distance import geodesic
from sqlalchemy import text
from sqlalchemy.orm import Session

from .models import Engineer

CELL_DEGREES = 0.05  # ≈ 5.5 km north-south; a grid, not a business rule
EARTH_RADIUS_KM = 6371.0088
HAVERSINE_SLACK = 0.99  # geodesic ≥ 0.99 × haversine everywhere on WGS84


@dataclass(frozen=True)
class DispatchRules:
    """What makes an engineer eligible; the BPMN passes these (designer-editable)."""

    skill: str
    position_fresh_minutes: float = 30
    max_open_jobs: int = 3
    max_distance_km: float = 150
    timezone: str = "UTC"


@dataclass(frozen=True)
class Candidate:
    """An engineer as dispatch sees one row."""

    id: int
    lat: float
    lon: float
    open_jobs: int
    user_id: int | None = None


COLUMNS = (Engineer.id, Engineer.user_id, Engineer.skills, Engineer.status, Engineer.open_jobs, Engineer.home_lat,
           Engineer.home_lon, Engineer.last_lat, Engineer.last_lon, Engineer.last_seen_at, Engineer.shift_start,
           Engineer.shift_end)


def cell_of(lat: float, lon: float) -> int:
    """The grid cell key of a position."""
    return _key(math.floor(lat / CELL_DEGREES), math.floor(lon / CELL_DEGREES))


def _key(i: int, j: int) -> int:
    # |i| ≤ 1800 and |j| ≤ 3600 at 0.05°: the key fits a 32-bit integer column.
    return (i + 2_000) * 10_000 + (j + 5_000)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean-radius sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def geodesic_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The exact (WGS84) distance, as geopy computes it."""
    return geodesic((lat1, lon1), (lat2, lon2)).km


def on_shift(shift_start: str, shift_end: str, now: datetime, timezone: str) -> bool:
    """Whether local ``now`` falls in the shift (an end before the start is an overnight shift,
    an end equal to the start a 24-hour one)."""
    local = now.astimezone(ZoneInfo(timezone)).time()
    start, end = time.fromisoformat(shift_start), time.fromisoformat(shift_end)
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


def eligible(row, rules: DispatchRules, now: datetime, exclude: frozenset[int]) -> Candidate | None:
    """The row as a candidate if it may take the job now (position: last known if fresh, else home)."""
    if (row.id in exclude or row.status != "available" or row.open_jobs >= rules.max_open_jobs
            or f",{rules.skill}," not in row.skills
            or not on_shift(row.shift_start, row.shift_end, now, rules.timezone)):
        return None
    fresh_after = now - timedelta(minutes=rules.position_fresh_minutes)
    if row.last_lat is not None and row.last_seen_at is not None and row.last_seen_at >= fresh_after:
        return Candidate(row.id, row.last_lat, row.last_lon, row.open_jobs, row.user_id)
    return Candidate(row.id, row.home_lat, row.home_lon, row.open_jobs, row.user_id)


def rank_key(lat: float, lon: float, candidate: Candidate) -> tuple[float, int, int]:
    """The order of preference: geodesic distance, then fewer open jobs, then the lower id."""
    return geodesic_km(lat, lon, candidate.lat, candidate.lon), candidate.open_jobs, candidate.id


def exhaustive_choice(lat: float, lon: float, rows: Iterable, rules: DispatchRules, now: datetime,
                      exclude: frozenset[int] = frozenset()) -> Candidate | None:
    """The reference answer: every eligible engineer's geodesic distance, the best kept."""
    candidates = [c for c in (eligible(r, rules, now, exclude) for r in rows) if c is not None]
    best = min(((rank_key(lat, lon, c), c) for c in candidates), key=lambda item: item[0], default=None)
    return best[1] if best is not None and best[0][0] <= rules.max_distance_km else None


def _outside_lower_bound_km(lat: float, lon: float, i0: int, j0: int, radius: int) -> float:
    """A lower bound of the distance from (lat, lon) to any point outside the searched square."""
    south, north = (i0 - radius) * CELL_DEGREES, (i0 + radius + 1) * CELL_DEGREES
    west, east = (j0 - radius) * CELL_DEGREES, (j0 + radius + 1) * CELL_DEGREES
    bounds = [math.radians(lat - south), math.radians(north - lat)]
    for delta in (lon - west, east - lon):
        if delta >= 90:
            continue  # the square already spans a hemisphere east-west
        # Distance from the point to the meridian great circle at that edge.
        bounds.append(math.asin(min(1.0, math.sin(math.radians(delta)) * math.cos(math.radians(lat)))))
    return HAVERSINE_SLACK * EARTH_RADIUS_KM * max(0.0, min(bounds))


def _ring_ranges(i0: int, j0: int, inner: int, outer: int) -> list[tuple[int, int]]:
    """Cell-key ranges covering the cells at Chebyshev distance (inner, outer] from (i0, j0)
    (inner −1: the centre too). Keys of one grid row are consecutive, so each row is at most two
    ranges: a query costs O(radius) index range scans, not O(radius²) keys."""
    ranges = []
    for i in range(i0 - outer, i0 + outer + 1):
        if abs(i - i0) > inner:
            ranges.append((_key(i, j0 - outer), _key(i, j0 + outer)))
        else:
            ranges.append((_key(i, j0 - outer), _key(i, j0 - inner - 1)))
            ranges.append((_key(i, j0 + inner + 1), _key(i, j0 + outer)))
    return ranges


_ring_queries: dict[int, object] = {}


def _ring_query(range_count: int):
    """The candidate query for ``range_count`` cell ranges, built once per count: composing
    hundreds of BETWEEN expressions per request would cost more than running the query."""
    query = _ring_queries.get(range_count)
    if query is None:
        ranges = " OR ".join(f"(pos_cell BETWEEN :l{n} AND :h{n}) OR (home_cell BETWEEN :l{n} AND :h{n})"
                             for n in range(range_count))
        columns = ", ".join(column.key for column in COLUMNS)
        query = _ring_queries[range_count] = text(
            f"SELECT {columns} FROM engineers WHERE status = 'available' AND open_jobs < :max_jobs "
            f"AND skills LIKE :skill AND ({ranges})").columns(*COLUMNS)
    return query


def nearest_engineer(session: Session, lat: float, lon: float, rules: DispatchRules, now: datetime,
                     exclude: Iterable[int] = ()) -> Candidate | None:
    """The engineer an exhaustive scan would pick, reading only nearby rows (see the module doc)."""
    exclude = frozenset(exclude)
    i0, j0 = math.floor(lat / CELL_DEGREES), math.floor(lon / CELL_DEGREES)
    seen: set[int] = set()
    pending: list[tuple[float, Candidate]] = []  # (haversine, candidate) not yet measured exactly
    best: tuple[float, int, int] | None = None
    best_candidate = None
    inner, outer = -1, 1
    skill_pattern = f"%,{rules.skill},%"
    while True:
        ranges = _ring_ranges(i0, j0, inner, outer)
        params = {"max_jobs": rules.max_open_jobs, "skill": skill_pattern}
        for n, (low, high) in enumerate(ranges):
            params[f"l{n}"], params[f"h{n}"] = low, high
        for row in session.execute(_ring_query(len(ranges)), params):
            if row.id in seen:
                continue
            seen.add(row.id)
            candidate = eligible(row, rules, now, exclude)
            if candidate is not None:
                pending.append((haversine_km(lat, lon, candidate.lat, candidate.lon), candidate))
        pending.sort(key=lambda item: item[0])
        while pending and (best is None or HAVERSINE_SLACK * pending[0][0] <= best[0]):
            _, candidate = pending.pop(0)
            key = rank_key(lat, lon, candidate)
            if best is None or key < best:
                best, best_candidate = key, candidate
        boundary = _outside_lower_bound_km(lat, lon, i0, j0, outer)
        if best is not None and best[0] < boundary:
            break
        if boundary > rules.max_distance_km:
            break
        # 1, 3, 7, 15 …: few queries where engineers are sparse, never wider than the search radius
        wider = outer * 2 + 1
        while wider > outer + 1 and _outside_lower_bound_km(lat, lon, i0, j0, wider - 1) > rules.max_distance_km:
            wider -= 1
        inner, outer = outer, wider
    if best is not None and best[0] > rules.max_distance_km:
        return None
    return best_candidate
