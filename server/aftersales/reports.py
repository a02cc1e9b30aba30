"""Service reports: SLA compliance, first-time fix, response and repair times,
engineer utilisation and rating, failures by product model."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select

from ..db import utcnow
from ..extensions import db
from .models import Asset, Engineer, Rating, ServiceRequest


def _period(since: date | None, until: date | None) -> tuple[datetime, datetime]:
    # Whole days: [since 00:00, until+1 00:00); the default is the 30 days up to and including today.
    last_day = until or utcnow().date()
    end = datetime.combine(last_day, time(), UTC) + timedelta(days=1)
    start = datetime.combine(since, time(), UTC) if since else end - timedelta(days=30)
    return start, end


def _mean_minutes(deltas: list[timedelta]) -> float | None:
    return round(sum(d.total_seconds() for d in deltas) / 60 / len(deltas), 1) if deltas else None


def _clock(requests, due_attr: str, done_attr: str, now: datetime) -> dict:
    met = breached = 0
    for r in requests:
        due, done = getattr(r, due_attr), getattr(r, done_attr)
        if due is None:
            continue
        if done is not None and done <= due:
            met += 1
        elif (done or now) > due:
            breached += 1
    judged = met + breached
    return {"met": met, "breached": breached, "compliance_percent": round(100 * met / judged, 1) if judged else None}


def _shift_hours(engineer: Engineer) -> float:
    start, end = time.fromisoformat(engineer.shift_start), time.fromisoformat(engineer.shift_end)
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    return (minutes if minutes > 0 else minutes + 24 * 60) / 60


def service_report(since: date | None = None, until: date | None = None) -> dict:
    """The service figures for requests reported in [since, until] (default: the last 30 days)."""
    start, end = _period(since, until)
    now = utcnow()
    requests = db.session.scalars(select(ServiceRequest).where(ServiceRequest.created_at >= start,
                                                               ServiceRequest.created_at < end)).all()
    visited = [r for r in requests if r.first_time_fix is not None]
    days = max((end - start).total_seconds() / 86400, 1 / 24)
    busy: dict[int, float] = {}
    jobs: dict[int, int] = {}
    for r in requests:
        if r.engineer_id and r.responded_at and r.resolved_at:
            busy[r.engineer_id] = busy.get(r.engineer_id, 0.0) + (r.resolved_at - r.responded_at).total_seconds() / 3600
            jobs[r.engineer_id] = jobs.get(r.engineer_id, 0) + 1
    ratings = dict(db.session.execute(
        select(Rating.engineer_id, func.avg(Rating.stars)).where(Rating.created_at >= start, Rating.created_at < end)
        .group_by(Rating.engineer_id)).all())
    engineer_ids = set(busy) | {e for e in ratings if e is not None}
    engineers = db.session.scalars(select(Engineer).where(Engineer.id.in_(engineer_ids))).all()
    failures = db.session.execute(
        select(Asset.model, Asset.product_line, func.count(ServiceRequest.id))
        .join(Asset, Asset.id == ServiceRequest.asset_id)
        .where(ServiceRequest.created_at >= start, ServiceRequest.created_at < end)
        .group_by(Asset.model, Asset.product_line).order_by(func.count(ServiceRequest.id).desc(), Asset.model)).all()
    return {
        "period": {"since": start.isoformat(), "until": end.isoformat()},
        "requests": len(requests),
        "sla": {"response": _clock(requests, "response_due_at", "responded_at", now),
                "resolution": _clock(requests, "resolution_due_at", "resolved_at", now)},
        "first_time_fix_rate": round(100 * sum(1 for r in visited if r.first_time_fix) / len(visited), 1)
        if visited else None,
        "mean_minutes_to_respond": _mean_minutes([r.responded_at - r.created_at for r in requests if r.responded_at]),
        "mean_minutes_to_repair": _mean_minutes([r.resolved_at - r.created_at for r in requests if r.resolved_at]),
        "engineers": sorted(({
            "engineer_id": e.id, "name": e.name, "jobs": jobs.get(e.id, 0),
            "hours_on_jobs": round(busy.get(e.id, 0.0), 2),
            "utilisation_percent": round(100 * busy.get(e.id, 0.0) / (_shift_hours(e) * days), 1),
            "average_rating": round(float(ratings[e.id]), 2) if ratings.get(e.id) is not None else None,
        } for e in engineers), key=lambda row: row["engineer_id"]),
        "failures_by_model": [{"model": m, "product_line": pl, "requests": n} for m, pl, n in failures],
    }
