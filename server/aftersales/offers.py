"""Dispatch offers, like ride-hailing: the BPMN offers a job to the nearest eligible engineer
(``dispatch.nearest_engineer``), who accepts or declines within the offer window; declines and
timeouts re-dispatch; the dispatcher can override; waiting requests are retried when an engineer
becomes available."""

from __future__ import annotations

import secrets

from flask import current_app
from sqlalchemy import select

from ..auth.models import User
from ..auth.services import ensure_user
from ..db import utcnow
from ..engine import register_service
from ..errors import Conflict, ValidationFailed
from ..extensions import db
from ..processes.messages import deliver_message
from ..processes.models import HumanTask
from ..processes.tasks import complete_task
from .dispatch import DispatchRules, nearest_engineer
from .engineers import release_engineer, take_engineer
from .models import Engineer, ServiceRequest
from .service_requests import get_request, lock_process_of, log_event
from .workorders import complete_step, work_order_to_change

TIER_RANK = {"vip": 0, "key": 1, "normal": 2}


@register_service("offer_to_nearest")
def offer_to_nearest(request_id: int, position_fresh_minutes: float = 30, max_open_jobs: int = 3,
                     max_distance_km: float = 150) -> dict:
    """Offer the job to the dispatcher's override, else to the nearest eligible engineer who has not
    declined it. Returns who got the offer (``engineer_user_id`` None when nobody is available)."""
    req = get_request(request_id)
    now = utcnow()
    chosen = None
    if req.override_engineer_id is not None:
        chosen = db.session.get(Engineer, req.override_engineer_id)
        req.override_engineer_id = None
        if chosen is not None:
            take_engineer(chosen.id, None)
    else:
        rules = DispatchRules(skill=req.required_skill, position_fresh_minutes=position_fresh_minutes,
                              max_open_jobs=max_open_jobs, max_distance_km=max_distance_km,
                              timezone=current_app.config["TIMEZONE"])
        exclude = set(req.declined_engineer_ids or [])
        for _ in range(5):  # a concurrent dispatch may fill the chosen engineer's last slot: pick again
            candidate = nearest_engineer(db.session, req.asset.lat, req.asset.lon, rules, now, exclude)
            if candidate is None:
                break
            if take_engineer(candidate.id, max_open_jobs):
                chosen = db.session.get(Engineer, candidate.id)
                break
            exclude.add(candidate.id)
    if chosen is None:
        req.status, req.engineer_id = "dispatching", None
        log_event(req, "no_engineer_available")
        return {"engineer_id": None, "engineer_user_id": None}
    req.status, req.engineer_id, req.offered_at = "offered", chosen.id, now
    log_event(req, "offered", engineer_id=chosen.id)
    return {"engineer_id": chosen.id, "engineer_user_id": chosen.user_id, "engineer_name": chosen.name}


@register_service("record_decline")
def record_decline(request_id: int, reason: str | None = None) -> bool:
    """The offered engineer declined (or let the offer time out): never offer this job to them again."""
    req = get_request(request_id)
    if req.engineer_id is not None:
        req.declined_engineer_ids = [*(req.declined_engineer_ids or []), req.engineer_id]
        release_engineer(req.engineer_id)
        log_event(req, "declined" if reason != "timeout" else "offer_timeout", engineer_id=req.engineer_id, note=reason)
    req.status, req.engineer_id = "dispatching", None
    return True


@register_service("withdraw_offer")
def withdraw_offer(request_id: int) -> bool:
    """A dispatcher override took the offer back from the engineer holding it (not a decline)."""
    req = get_request(request_id)
    if req.engineer_id is not None:
        release_engineer(req.engineer_id)
        log_event(req, "offer_withdrawn", engineer_id=req.engineer_id)
    req.status, req.engineer_id = "dispatching", None
    return True


@register_service("set_dispatch_override")
def set_dispatch_override(request_id: int, engineer_id: int | None = None) -> bool:
    """Remember the dispatcher's choice for the next offer (None: try automatic dispatch again)."""
    req = get_request(request_id)
    req.override_engineer_id = int(engineer_id) if engineer_id else None
    return True


@register_service("record_acceptance")
def record_acceptance(request_id: int) -> bool:
    """The engineer accepted: the response clock stops."""
    req = get_request(request_id)
    req.status = "accepted"
    req.responded_at = req.responded_at or utcnow()
    log_event(req, "accepted", engineer_id=req.engineer_id)
    return True


def respond_to_offer(request_id: int, user: User, accept: bool, reason: str | None = None, *,
                     client: str | None = None) -> ServiceRequest:
    """The engineer accepts or declines the offer (a decline re-dispatches to the next candidate)."""
    req, _ = work_order_to_change(request_id, user)
    if not accept and not (reason or "").strip():
        raise ValidationFailed("say why you decline", errors=[{"field": "reason", "message": "required"}])
    complete_step(req, "accept_offer", "accept" if accept else "decline",
                  {"accept": accept, "decline_reason": reason or ""}, user, client)
    return req


def override_dispatch(request_id: int, engineer_id: int, actor: User, *, client: str | None = None) -> ServiceRequest:
    """The dispatcher sends the job to a named engineer, whatever automatic dispatch would pick."""
    lock_process_of(request_id)
    req = get_request(request_id)
    engineer = db.session.get(Engineer, engineer_id)
    if engineer is None:
        raise ValidationFailed("unknown engineer", errors=[{"field": "engineer_id", "message": "does not exist"}])
    if req.status == "offered" and req.engineer_id == engineer.id:
        return req
    manual = db.session.scalar(select(HumanTask.id).where(HumanTask.instance_id == req.instance_id,
                                                          HumanTask.element_id == "dispatch_manually",
                                                          HumanTask.status == "open"))
    if manual is not None:
        complete_task(manual, {"engineer_id": engineer.id}, actor, client=client)
    elif req.status == "offered":
        req.override_engineer_id = engineer.id
        deliver_message("dispatch_override", f"SR-{req.id}", {"override_by": actor.id},
                        actor=actor, client=client)
    else:
        raise Conflict(f"request {req.id} is {req.status}: it can only be redirected before it is accepted")
    log_event(req, "dispatch_override", engineer_id=engineer.id, actor=actor)
    return req


def redispatch_waiting() -> int:
    """Retry automatic dispatch for requests waiting in the dispatcher's queue, VIP first, then by
    response deadline; returns how many were retried. Run when an engineer becomes available."""
    rows = db.session.execute(
        select(ServiceRequest, HumanTask.id).join(HumanTask, HumanTask.instance_id == ServiceRequest.instance_id)
        .where(HumanTask.element_id == "dispatch_manually", HumanTask.status == "open")).all()
    rows.sort(key=lambda r: (TIER_RANK.get(r[0].tier, 9), r[0].response_due_at or r[0].created_at, r[0].id))
    system = db.session.scalar(select(User).where(User.username == "system")) or _system_user()
    for _, task_id in rows:
        complete_task(task_id, {"engineer_id": None}, system, client="redispatch")
    return len(rows)


def _system_user() -> User:
    return ensure_user("system", secrets.token_urlsafe(24), ["admin"], full_name="Flowdesk (automatic)")

