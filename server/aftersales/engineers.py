"""Field engineers: profiles, positions from their phones, availability, open-job counting, and the
plot of positions for the desk."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from ..auth.models import User
from ..db import utcnow
from ..errors import PermissionDenied, ValidationFailed
from ..extensions import db
from ..jobs.queues import enqueue_after_commit
from .dispatch import cell_of
from .models import ENGINEER_STATUSES, Engineer

REDISPATCH_JOB = "server.aftersales.jobs.redispatch_job"  # see aftersales/jobs.py


def engineer_of(user: User) -> Engineer:
    """The engineer profile of a user, or PermissionDenied."""
    engineer = db.session.scalar(select(Engineer).where(Engineer.user_id == user.id))
    if engineer is None:
        raise PermissionDenied("this account has no engineer profile")
    return engineer


def take_engineer(engineer_id: int, max_open_jobs: int | None) -> bool:
    """Count one more open job for an engineer; False if someone else took the last slot meanwhile."""
    query = update(Engineer).where(Engineer.id == engineer_id)
    if max_open_jobs is not None:
        query = query.where(Engineer.open_jobs < max_open_jobs)
    result = db.session.execute(query.values(open_jobs=Engineer.open_jobs + 1)
                                .execution_options(synchronize_session=False))
    return result.rowcount == 1


def release_engineer(engineer_id: int | None) -> None:
    """Count one open job less for an engineer (never below zero)."""
    if engineer_id is not None:
        db.session.execute(update(Engineer).where(Engineer.id == engineer_id, Engineer.open_jobs > 0)
                           .values(open_jobs=Engineer.open_jobs - 1).execution_options(synchronize_session=False))


def set_position(engineer: Engineer, lat: float, lon: float, at: datetime | None = None) -> None:
    """Store an engineer's position (a client's time is never taken as later than now)."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValidationFailed("position out of range", errors=[{"field": "lat/lon", "message": "out of range"}])
    engineer.last_lat, engineer.last_lon = lat, lon
    engineer.last_seen_at = min(at or utcnow(), utcnow())
    engineer.pos_cell = cell_of(lat, lon)


def ping_position(user: User, lat: float, lon: float, at: datetime | None = None) -> Engineer:
    """Record where the engineer's phone is."""
    engineer = engineer_of(user)
    set_position(engineer, lat, lon, at)
    return engineer


def set_engineer_status(user: User, status: str) -> Engineer:
    """Available / break / off; becoming available retries the waiting queue (after commit, as a job)."""
    if status not in ENGINEER_STATUSES:
        raise ValidationFailed("unknown status", errors=[{"field": "status",
                                                         "message": f"one of {', '.join(ENGINEER_STATUSES)}"}])
    engineer = engineer_of(user)
    became_available = status == "available" and engineer.status != "available"
    engineer.status = status
    if became_available:
        # When Redis does not answer, the waiting requests keep their escalation timer until the next
        # engineer becomes available or a dispatcher acts.
        enqueue_after_commit(REDISPATCH_JOB, at_front=True)
    return engineer


def create_engineer(name: str, skills: list[str], home_lat: float, home_lon: float, *, user_id: int | None = None,
                    shift_start: str = "08:00", shift_end: str = "17:00", status: str = "available") -> Engineer:
    """Add an engineer (skills normalised to lower case)."""
    engineer = Engineer(name=name, user_id=user_id, skills="," + ",".join(s.strip().lower() for s in skills) + ",",
                        home_lat=home_lat, home_lon=home_lon, home_cell=cell_of(home_lat, home_lon),
                        shift_start=shift_start, shift_end=shift_end, status=status, open_jobs=0)
    db.session.add(engineer)
    return engineer


def engineer_positions(engineers: list[Engineer]) -> list[dict]:
    """Where each engineer is: the last reported position or, without one, the home base
    (``live`` says which)."""
    return [{"engineer": e, "lat": e.last_lat if e.last_lat is not None else e.home_lat,
             "lon": e.last_lon if e.last_lon is not None else e.home_lon, "live": e.last_lat is not None}
            for e in engineers]
