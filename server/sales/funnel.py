"""The funnel report: counts and values per stage, conversion, days in stage, lost reasons, forecast."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from ..auth.models import User
from ..db import utcnow
from ..extensions import db
from .models import STAGES, Opportunity, StageChange
from .scoping import scoped

STAGE_PROBABILITY = {"initial_contact": 0.1, "needs_confirmed": 0.25, "solution_demo": 0.5,
                     "quote_negotiation": 0.75, "won": 1.0, "lost": 0.0}


def funnel(user: User, *, team_id: int | None = None, owner_id: int | None = None,
           since: datetime | None = None, until: datetime | None = None) -> dict:
    """Per stage: count and value, conversion to the next stage, average days in stage; lost reasons;
    forecast = Σ value × stage probability over open deals. Scoped to what the user may see."""
    stmt = scoped(select(Opportunity), Opportunity.owner_id, user)
    if team_id:
        stmt = stmt.where(Opportunity.team_id == team_id)
    if owner_id:
        stmt = stmt.where(Opportunity.owner_id == owner_id)
    if since:
        stmt = stmt.where(Opportunity.created_at >= since)
    if until:
        stmt = stmt.where(Opportunity.created_at < until)
    opps = db.session.scalars(stmt).all()
    ids = [o.id for o in opps]
    reached: dict[str, set[int]] = {s: set() for s in STAGES}
    days: dict[str, list[float]] = {s: [] for s in STAGES}
    now = utcnow()
    for change in db.session.scalars(select(StageChange).where(StageChange.opportunity_id.in_(ids))):
        reached[change.stage].add(change.opportunity_id)
        if change.stage not in ("won", "lost"):
            days[change.stage].append(((change.left_at or now) - change.entered_at).total_seconds() / 86400)
    stages = []
    path = ["initial_contact", "needs_confirmed", "solution_demo", "quote_negotiation", "won"]
    for stage in STAGES:
        current = [o for o in opps if o.stage == stage]
        row = {"stage": stage, "count": len(current), "value": float(sum((o.amount for o in current), Decimal(0))),
               "reached": len(reached[stage]), "probability": STAGE_PROBABILITY[stage],
               "average_days": round(sum(days[stage]) / len(days[stage]), 2) if days[stage] else None}
        if stage in path[:-1]:
            following = path[path.index(stage) + 1]
            row["conversion_to_next"] = round(len(reached[following]) / len(reached[stage]) * 100, 1) \
                if reached[stage] else None
        stages.append(row)
    lost: dict[str, int] = {}
    for o in opps:
        if o.stage == "lost":
            lost[o.lost_reason or "unspecified"] = lost.get(o.lost_reason or "unspecified", 0) + 1
    forecast = sum(float(o.amount) * STAGE_PROBABILITY[o.stage] for o in opps if o.stage not in ("won", "lost"))
    return {"stages": stages, "lost_reasons": [{"reason": r, "count": n} for r, n in sorted(lost.items())],
            "weighted_forecast": round(forecast, 2), "opportunities": len(opps)}

