"""After-sales services: intake, the steps the BPMN calls (SLA clock, dispatch,
offers, pricing, closing), the engineer's actions (which complete the BPMN's
human tasks through the process services — one path into the engine), parts,
payment, rating and reports.

Functions decorated with ``register_service`` are called by
``workflows/after_sales_service.bpmn``; their parameters are the process's
designer-editable rules (freshness window, max open jobs, prices …)."""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..auth.models import User
from ..db import after_commit, utcnow
from ..engine import register_service
from ..errors import Conflict, Gone, NotFound, PermissionDenied, ValidationFailed
from ..extensions import db
from ..processes import services as processes
from ..processes.models import HumanTask
from . import tokens
from .dispatch import DispatchRules, cell_of, nearest_engineer
from .models import (
    ENGINEER_STATUSES,
    PAYMENT_METHODS,
    PRIORITIES,
    Account,
    Asset,
    Engineer,
    Part,
    PartUsage,
    Payment,
    Rating,
    ServiceRequest,
    StockLevel,
    WorkOrderEvent,
)

PROCESS_KEY = "after_sales_service"
OPEN_STATUSES = ("dispatching", "offered", "accepted", "en_route", "on_site", "work_done")
TIER_RANK = {"vip": 0, "key": 1, "normal": 2}
CENT = Decimal("0.01")


# -- lookups ----------------------------------------------------------------------
def get_request(request_id: int) -> ServiceRequest:
    """A service request or NotFound."""
    req = db.session.get(ServiceRequest, request_id)
    if req is None:
        raise NotFound(f"service request {request_id} does not exist")
    return req


def get_asset(asset_id: int) -> Asset:
    """An asset or NotFound."""
    asset = db.session.get(Asset, asset_id)
    if asset is None:
        raise NotFound(f"asset {asset_id} does not exist")
    return asset


def engineer_of(user: User) -> Engineer:
    """The engineer profile of a user, or PermissionDenied."""
    engineer = db.session.scalar(select(Engineer).where(Engineer.user_id == user.id))
    if engineer is None:
        raise PermissionDenied("this account has no engineer profile")
    return engineer


def work_order_for(request_id: int, user: User) -> tuple[ServiceRequest, Engineer]:
    """A work order of the calling engineer; someone else's is reported as not found."""
    engineer = engineer_of(user)
    req = db.session.get(ServiceRequest, request_id)
    if req is None or req.engineer_id != engineer.id:
        raise NotFound(f"work order {request_id} does not exist")
    return req, engineer


def _lock_process_of(request_id: int) -> None:
    """Before an action changes a request and then advances its process: lock the process instance first
    (the lock order every writer follows, so a timer firing on the same request meanwhile cannot deadlock
    with it), then re-read the request as it is now."""
    req = db.session.get(ServiceRequest, request_id)
    if req is not None and req.instance_id is not None:
        processes.lock_instance(req.instance_id)
        db.session.refresh(req)


def _work_order_to_change(request_id: int, user: User) -> tuple[ServiceRequest, Engineer]:
    # work_order_for, with the request's process locked for this transaction (for actions)
    _lock_process_of(request_id)
    return work_order_for(request_id, user)


def _log(req: ServiceRequest, status: str, *, engineer_id: int | None = None, actor: User | None = None,
         lat: float | None = None, lon: float | None = None, note: str | None = None) -> None:
    db.session.add(WorkOrderEvent(request_id=req.id, status=status, engineer_id=engineer_id,
                                  actor_id=actor.id if actor else None, lat=lat, lon=lon, note=note, at=utcnow()))


def _coverage(asset: Asset, today: date) -> str | None:
    if asset.warranty_end and asset.warranty_end >= today:
        return "warranty"
    if asset.contract_end and asset.contract_end >= today:
        return "contract"
    return None


# -- intake -----------------------------------------------------------------------
def report_fault(asset_id: int, description: str, *, source: str, priority: str = "normal",
                 reporter_name: str | None = None, reporter_phone: str | None = None,
                 photo_path: str | None = None, actor: User | None = None, client: str | None = None
                 ) -> tuple[ServiceRequest, bool]:
    """Open a service request on an asset and start its process; returns (request, created).

    A QR report on an asset that already has an open request returns that request
    (a second scan is the same fault, not a new job)."""
    description = (description or "").strip()
    if not description:
        raise ValidationFailed("describe the fault", errors=[{"field": "description", "message": "required"}])
    if priority not in PRIORITIES:
        raise ValidationFailed("unknown priority", errors=[{"field": "priority",
                                                           "message": f"one of {', '.join(PRIORITIES)}"}])
    asset = get_asset(asset_id)
    if source == "qr":
        existing = db.session.scalar(select(ServiceRequest).where(
            ServiceRequest.asset_id == asset.id, ServiceRequest.status.in_(OPEN_STATUSES)))
        if existing is not None:
            return existing, False
    now = utcnow()
    req = ServiceRequest(
        asset_id=asset.id, account_id=asset.account_id, tier=asset.account.tier, priority=priority,
        required_skill=asset.product_line, description=description[:5000], reporter_name=reporter_name,
        reporter_phone=reporter_phone, photo_path=photo_path, source=source, status="dispatching",
        covered_by=_coverage(asset, now.date()), declined_engineer_ids=[], sla_events={}, created_at=now)
    db.session.add(req)
    db.session.flush()
    _log(req, "reported", actor=actor, note=source)
    view = processes.start_instance(
        PROCESS_KEY, {"request_id": req.id, "tier": req.tier, "priority": req.priority,
                      "product_line": asset.product_line, "covered_by": req.covered_by},
        business_key=f"SR-{req.id}", actor=actor, client=client)
    req.instance_id = view["instance"].id
    return req, True


# -- steps called by the BPMN -------------------------------------------------------
@register_service("start_sla_clock")
def start_sla_clock(request_id: int, response_minutes: int, resolution_minutes: int) -> dict:
    """Set the response and resolution deadlines (targets from the SLA DMN) from the report time."""
    req = get_request(request_id)
    req.response_due_at = req.created_at + timedelta(minutes=response_minutes)
    req.resolution_due_at = req.created_at + timedelta(minutes=resolution_minutes)
    return {"response_due_at": req.response_due_at.isoformat(), "resolution_due_at": req.resolution_due_at.isoformat()}


@register_service("record_sla_event")
def record_sla_event(request_id: int, clock: str, level: str) -> bool:
    """Note an SLA warning or breach on the request (the BPMN timer decides when)."""
    req = get_request(request_id)
    req.sla_events = {**(req.sla_events or {}), f"{clock}_{level}": utcnow().isoformat()}
    _log(req, f"sla_{clock}_{level}")
    return True


@register_service("escalate_request")
def escalate_request(request_id: int, reason: str) -> bool:
    """Mark a request escalated to the service manager."""
    req = get_request(request_id)
    req.escalated_at = req.escalated_at or utcnow()
    _log(req, "escalated", note=reason)
    return True


def _take_engineer(engineer_id: int, max_open_jobs: int | None) -> bool:
    """Count one more open job for an engineer; False if someone else took the last slot meanwhile."""
    query = update(Engineer).where(Engineer.id == engineer_id)
    if max_open_jobs is not None:
        query = query.where(Engineer.open_jobs < max_open_jobs)
    result = db.session.execute(query.values(open_jobs=Engineer.open_jobs + 1)
                                .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _release_engineer(engineer_id: int | None) -> None:
    if engineer_id is not None:
        db.session.execute(update(Engineer).where(Engineer.id == engineer_id, Engineer.open_jobs > 0)
                           .values(open_jobs=Engineer.open_jobs - 1).execution_options(synchronize_session=False))


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
            _take_engineer(chosen.id, None)
    else:
        rules = DispatchRules(skill=req.required_skill, position_fresh_minutes=position_fresh_minutes,
                              max_open_jobs=max_open_jobs, max_distance_km=max_distance_km,
                              timezone=current_app.config["TIMEZONE"])
        exclude = set(req.declined_engineer_ids or [])
        for _ in range(5):  # a concurrent dispatch may fill the chosen engineer's last slot: pick again
            candidate = nearest_engineer(db.session, req.asset.lat, req.asset.lon, rules, now, exclude)
            if candidate is None:
                break
            if _take_engineer(candidate.id, max_open_jobs):
                chosen = db.session.get(Engineer, candidate.id)
                break
            exclude.add(candidate.id)
    if chosen is None:
        req.status, req.engineer_id = "dispatching", None
        _log(req, "no_engineer_available")
        return {"engineer_id": None, "engineer_user_id": None}
    req.status, req.engineer_id, req.offered_at = "offered", chosen.id, now
    _log(req, "offered", engineer_id=chosen.id)
    return {"engineer_id": chosen.id, "engineer_user_id": chosen.user_id, "engineer_name": chosen.name}


@register_service("record_decline")
def record_decline(request_id: int, reason: str | None = None) -> bool:
    """The offered engineer declined (or let the offer time out): never offer this job to them again."""
    req = get_request(request_id)
    if req.engineer_id is not None:
        req.declined_engineer_ids = [*(req.declined_engineer_ids or []), req.engineer_id]
        _release_engineer(req.engineer_id)
        _log(req, "declined" if reason != "timeout" else "offer_timeout", engineer_id=req.engineer_id, note=reason)
    req.status, req.engineer_id = "dispatching", None
    return True


@register_service("withdraw_offer")
def withdraw_offer(request_id: int) -> bool:
    """A dispatcher override took the offer back from the engineer holding it (not a decline)."""
    req = get_request(request_id)
    if req.engineer_id is not None:
        _release_engineer(req.engineer_id)
        _log(req, "offer_withdrawn", engineer_id=req.engineer_id)
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
    _log(req, "accepted", engineer_id=req.engineer_id)
    return True


@register_service("record_visit")
def record_visit(request_id: int, fixed: bool) -> bool:
    """One visit ended: fixed (the resolution clock stops) or another visit is needed."""
    req = get_request(request_id)
    req.visits = (req.visits or 0) + 1
    if fixed:
        req.status, req.resolved_at = "work_done", utcnow()
        req.first_time_fix = req.visits == 1
    else:
        req.status = "accepted"
    _log(req, "work_done" if fixed else "revisit_needed", engineer_id=req.engineer_id)
    return True


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def parts_total(req: ServiceRequest) -> Decimal:
    """The price of the parts consumed on a work order."""
    usages = db.session.scalars(select(PartUsage).where(PartUsage.request_id == req.id,
                                                        PartUsage.status == "consumed")).all()
    return sum((_money(u.unit_price) * u.quantity for u in usages), Decimal("0.00"))


@register_service("price_job")
def price_job(request_id: int, hourly_rate: float, callout_fee: float) -> dict:
    """What the customer pays: parts + labour at the DMN's rates, nothing when warranty/contract covers it."""
    req = get_request(request_id)
    labour = _money(Decimal(str(hourly_rate)) * Decimal(req.labour_minutes or 0) / 60)
    amount = Decimal("0.00") if req.covered_by else _money(parts_total(req) + labour + _money(callout_fee))
    req.amount_due = amount
    return {"amount": float(amount), "covered_by": req.covered_by}


@register_service("close_job")
def close_job(request_id: int) -> dict:
    """Close the work order: free the engineer and issue the single-use rating link."""
    req = get_request(request_id)
    req.status, req.closed_at = "closed", utcnow()
    req.rating_jti = secrets.token_hex(16)
    _release_engineer(req.engineer_id)
    _log(req, "closed", engineer_id=req.engineer_id)
    return {"closed_at": req.closed_at.isoformat()}


# -- work-order actions (engineer or dispatcher) -------------------------------------
def _open_task(req: ServiceRequest, element_id: str, action: str) -> HumanTask:
    task = db.session.scalar(select(HumanTask).where(HumanTask.instance_id == req.instance_id,
                                                     HumanTask.element_id == element_id,
                                                     HumanTask.status == "open"))
    if task is None:
        raise Conflict(f"work order {req.id} is {req.status}: cannot {action} now")
    return task


def _complete(req: ServiceRequest, element_id: str, action: str, data: dict, actor: User,
              client: str | None) -> dict:
    task = _open_task(req, element_id, action)
    return processes.complete_task(task.id, data, actor, client=client)


def respond_to_offer(request_id: int, user: User, accept: bool, reason: str | None = None, *,
                     client: str | None = None) -> ServiceRequest:
    """The engineer accepts or declines the offer (a decline re-dispatches to the next candidate)."""
    req, _ = _work_order_to_change(request_id, user)
    if not accept and not (reason or "").strip():
        raise ValidationFailed("say why you decline", errors=[{"field": "reason", "message": "required"}])
    _complete(req, "accept_offer", "accept" if accept else "decline",
              {"accept": accept, "decline_reason": reason or ""}, user, client)
    return req


def update_status(request_id: int, user: User, status: str, lat: float | None = None, lon: float | None = None,
                  *, client: str | None = None) -> ServiceRequest:
    """En route (a note on the way) or on site (ends the travel step of the BPMN)."""
    req, engineer = _work_order_to_change(request_id, user)
    if lat is not None and lon is not None:
        _set_position(engineer, lat, lon)
    if status == "en_route":
        if req.status not in ("accepted", "en_route"):
            raise Conflict(f"work order {req.id} is {req.status}: cannot set en route now")
        req.status = "en_route"
        _log(req, "en_route", engineer_id=engineer.id, actor=user, lat=lat, lon=lon)
    elif status == "on_site":
        _open_task(req, "travel_to_site", "arrive")
        req.status = "on_site"
        _log(req, "on_site", engineer_id=engineer.id, actor=user, lat=lat, lon=lon)
        _complete(req, "travel_to_site", "arrive", {"arrived": True}, user, client)
    else:
        raise ValidationFailed("unknown status", errors=[{"field": "status", "message": "en_route or on_site"}])
    return req


def report_work_done(request_id: int, user: User, fixed: bool, notes: str, labour_minutes: int, *,
                     client: str | None = None) -> ServiceRequest:
    """The repair report: notes and labour; not fixed means another visit."""
    req, engineer = _work_order_to_change(request_id, user)
    _open_task(req, "repair", "report work done")
    req.work_notes = "\n".join(filter(None, [req.work_notes, notes]))
    req.labour_minutes = (req.labour_minutes or 0) + labour_minutes
    _complete(req, "repair", "report work done", {"fixed": fixed, "notes": notes,
                                                  "labour_minutes": labour_minutes}, user, client)
    return req


def record_payment(request_id: int, user: User, method: str, amount, reference: str | None = None, *,
                   client: str | None = None) -> Payment:
    """Take the payment the job costs (once per work order) and move the BPMN on."""
    req, engineer = _work_order_to_change(request_id, user)
    _open_task(req, "take_payment", "take payment")
    errors = []
    if method not in PAYMENT_METHODS:
        errors.append({"field": "method", "message": f"one of {', '.join(PAYMENT_METHODS)}"})
    if method in ("card", "transfer") and not (reference or "").strip():
        errors.append({"field": "reference", "message": f"required for {method} payments"})
    if _money(amount) != req.amount_due:
        errors.append({"field": "amount", "message": f"the amount due is {req.amount_due}"})
    if errors:
        raise ValidationFailed("the payment is not valid", errors=errors)
    payment = Payment(request_id=req.id, amount=req.amount_due, method=method, reference=reference,
                      receipt_number=f"RC-{req.id:07d}", received_by_id=user.id, created_at=utcnow())
    db.session.add(payment)
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict(f"work order {req.id} is already paid") from None
    _log(req, "paid", engineer_id=engineer.id, actor=user, note=f"{method} {payment.amount}")
    _complete(req, "take_payment", "take payment", {"payment_id": payment.id, "amount": float(payment.amount),
                                                    "method": method}, user, client)
    return payment


def complete_job(request_id: int, user: User, summary: str = "", *, client: str | None = None) -> dict:
    """Finish the job: the BPMN closes it and the job sheet with its rating QR is returned."""
    req, _ = _work_order_to_change(request_id, user)
    _complete(req, "complete_job", "complete the job", {"summary": summary}, user, client)
    return job_sheet(req)


def job_sheet(req: ServiceRequest) -> dict:
    """What was done, what it cost, and the customer's rating link (with its QR) once closed."""
    usages = db.session.scalars(select(PartUsage).where(PartUsage.request_id == req.id,
                                                        PartUsage.status == "consumed")).all()
    payment = db.session.scalar(select(Payment).where(Payment.request_id == req.id))
    sheet = {
        "request_id": req.id, "status": req.status, "asset": {"serial": req.asset.serial, "model": req.asset.model},
        "engineer": req.engineer.name if req.engineer else None, "notes": req.work_notes,
        "labour_minutes": req.labour_minutes, "covered_by": req.covered_by,
        "parts": [{"sku": u.part.sku, "name": u.part.name, "quantity": u.quantity,
                   "unit_price": float(u.unit_price)} for u in usages],
        "amount_due": float(req.amount_due) if req.amount_due is not None else None,
        "payment": {"amount": float(payment.amount), "method": payment.method, "reference": payment.reference,
                    "receipt_number": payment.receipt_number} if payment else None,
        "rating_url": None, "rating_qr_svg": None,
    }
    if req.status == "closed" and req.rating_jti:
        url = tokens.public_url(f"/rate/{rating_token(req)}")
        sheet["rating_url"], sheet["rating_qr_svg"] = url, tokens.qr_svg(url)
    return sheet


def rating_token(req: ServiceRequest) -> str:
    """The signed single-use token of a closed job's rating link."""
    return tokens.sign(tokens.JOB_RATING, {"r": req.id, "j": req.rating_jti})


def asset_report_token(asset: Asset) -> str:
    """The signed token printed (as a QR link) on an asset."""
    return tokens.sign(tokens.ASSET_REPORT, {"a": asset.id, "g": asset.qr_generation})


def asset_for_token(token: str) -> Asset:
    """The asset a fault-report link opens (403 forged, 410 expired or revoked)."""
    payload = tokens.verify(tokens.ASSET_REPORT, token, current_app.config["ASSET_QR_DAYS"])
    asset = db.session.get(Asset, payload.get("a"))
    if asset is None:
        raise PermissionDenied("this link is not valid")
    if asset.qr_generation != payload.get("g"):
        raise Gone("this QR code was replaced; use the new one on the machine")
    return asset


def request_for_rating_token(token: str) -> ServiceRequest:
    """The closed job a rating link opens (403 forged, 410 expired or already used)."""
    payload = tokens.verify(tokens.JOB_RATING, token, current_app.config["RATING_QR_DAYS"])
    req = db.session.get(ServiceRequest, payload.get("r"))
    if req is None or req.rating_jti is None or req.rating_jti != payload.get("j"):
        raise PermissionDenied("this link is not valid")
    if db.session.scalar(select(Rating.id).where(Rating.request_id == req.id)) is not None:
        raise Gone("this job has already been rated — thank you")
    return req


def rate_job(token: str, stars: int, comment: str | None = None, *, client: str | None = None) -> Rating:
    """Store the customer's rating (once) and hand it to the process (≤ 2 stars → follow-up task)."""
    req = request_for_rating_token(token)
    if not isinstance(stars, int) or not 1 <= stars <= 5:
        raise ValidationFailed("rate from 1 to 5 stars", errors=[{"field": "stars", "message": "1 to 5"}])
    rating = Rating(request_id=req.id, engineer_id=req.engineer_id, stars=stars,
                    comment=(comment or "").strip()[:2000] or None, created_at=utcnow())
    db.session.add(rating)
    try:
        db.session.flush()
    except IntegrityError:
        raise Gone("this job has already been rated — thank you") from None
    _log(req, "rated", note=f"{stars} stars")
    processes.deliver_message("rating_received", f"SR-{req.id}", {"rating_stars": stars,
                                                                  "rating_comment": rating.comment or ""},
                              client=client)
    return rating


# -- dispatcher ---------------------------------------------------------------------
def override_dispatch(request_id: int, engineer_id: int, actor: User, *, client: str | None = None) -> ServiceRequest:
    """The dispatcher sends the job to a named engineer, whatever automatic dispatch would pick."""
    _lock_process_of(request_id)
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
        processes.complete_task(manual, {"engineer_id": engineer.id}, actor, client=client)
    elif req.status == "offered":
        req.override_engineer_id = engineer.id
        processes.deliver_message("dispatch_override", f"SR-{req.id}", {"override_by": actor.id},
                                  actor=actor, client=client)
    else:
        raise Conflict(f"request {req.id} is {req.status}: it can only be redirected before it is accepted")
    _log(req, "dispatch_override", engineer_id=engineer.id, actor=actor)
    return req


FOLLOW_UP_ELEMENTS = ("dispatch_manually", "review_response_breach", "review_resolution_breach",
                      "follow_up_low_rating")


def desk_follow_ups(limit: int = 100) -> list[HumanTask]:
    """Open desk work: manual dispatches, SLA breach reviews, low-rating follow-ups (oldest first)."""
    return db.session.scalars(select(HumanTask).where(HumanTask.element_id.in_(FOLLOW_UP_ELEMENTS),
                                                      HumanTask.status == "open")
                              .order_by(HumanTask.id).limit(limit)).all()


def engineer_positions(engineers: list[Engineer]) -> list[dict]:
    """Where each engineer is: the last reported position or, without one, the home base
    (``live`` says which)."""
    return [{"engineer": e, "lat": e.last_lat if e.last_lat is not None else e.home_lat,
             "lon": e.last_lon if e.last_lon is not None else e.home_lon, "live": e.last_lat is not None}
            for e in engineers]


def redispatch_waiting() -> int:
    """Retry automatic dispatch for requests waiting in the dispatcher's queue, VIP first, then by
    response deadline; returns how many were retried. Run when an engineer becomes available."""
    rows = db.session.execute(
        select(ServiceRequest, HumanTask.id).join(HumanTask, HumanTask.instance_id == ServiceRequest.instance_id)
        .where(HumanTask.element_id == "dispatch_manually", HumanTask.status == "open")).all()
    rows.sort(key=lambda r: (TIER_RANK.get(r[0].tier, 9), r[0].response_due_at or r[0].created_at, r[0].id))
    system = db.session.scalar(select(User).where(User.username == "system")) or _system_user()
    for _, task_id in rows:
        processes.complete_task(task_id, {"engineer_id": None}, system, client="redispatch")
    return len(rows)


def _system_user() -> User:
    from ..auth.services import ensure_user

    return ensure_user("system", secrets.token_urlsafe(24), ["admin"], full_name="Flowdesk (automatic)")


# -- engineers -----------------------------------------------------------------------
def _set_position(engineer: Engineer, lat: float, lon: float, at: datetime | None = None) -> None:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValidationFailed("position out of range", errors=[{"field": "lat/lon", "message": "out of range"}])
    engineer.last_lat, engineer.last_lon = lat, lon
    engineer.last_seen_at = min(at or utcnow(), utcnow())
    engineer.pos_cell = cell_of(lat, lon)


def ping_position(user: User, lat: float, lon: float, at: datetime | None = None) -> Engineer:
    """Record where the engineer's phone is."""
    engineer = engineer_of(user)
    _set_position(engineer, lat, lon, at)
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
        from .jobs import enqueue_redispatch

        after_commit(enqueue_redispatch)
    return engineer


def create_engineer(name: str, skills: list[str], home_lat: float, home_lon: float, *, user_id: int | None = None,
                    shift_start: str = "08:00", shift_end: str = "17:00", status: str = "available") -> Engineer:
    """Add an engineer (skills normalised to lower case)."""
    engineer = Engineer(name=name, user_id=user_id, skills="," + ",".join(s.strip().lower() for s in skills) + ",",
                        home_lat=home_lat, home_lon=home_lon, home_cell=cell_of(home_lat, home_lon),
                        shift_start=shift_start, shift_end=shift_end, status=status, open_jobs=0)
    db.session.add(engineer)
    return engineer


# -- parts -----------------------------------------------------------------------------
def _location(engineer: Engineer, source: str) -> str:
    if source == "van":
        return f"van:{engineer.id}"
    if source == "warehouse":
        return "warehouse"
    raise ValidationFailed("unknown stock location", errors=[{"field": "source", "message": "van or warehouse"}])


def _stock(part_id: int, location: str) -> StockLevel:
    stock = db.session.scalar(select(StockLevel).where(StockLevel.part_id == part_id, StockLevel.location == location))
    if stock is None:
        raise Conflict(f"part {part_id} is not stocked at {location}")
    return stock


def _check_parts_step(req: ServiceRequest, quantity: int) -> None:
    if req.status not in ("accepted", "en_route", "on_site", "work_done"):
        raise Conflict(f"work order {req.id} is {req.status}: parts cannot change now")
    if not isinstance(quantity, int) or quantity < 1:
        raise ValidationFailed("quantity must be a positive whole number",
                               errors=[{"field": "quantity", "message": "≥ 1"}])


def _change_stock(stock_id: int, condition, **values) -> bool:
    # One conditional UPDATE: concurrent requests can never take stock below zero (the database
    # serialises writers on the row, and the CHECK constraints are the last line of defence).
    result = db.session.execute(update(StockLevel).where(StockLevel.id == stock_id, condition).values(**values)
                                .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _record_usage(req: ServiceRequest, engineer: Engineer, user: User, stock: StockLevel, quantity: int,
                  status: str) -> PartUsage:
    usage = PartUsage(request_id=req.id, stock_id=stock.id, part_id=stock.part_id, quantity=quantity, status=status,
                      unit_price=stock.part.unit_price, created_at=utcnow())
    db.session.add(usage)
    _log(req, f"part_{status}", engineer_id=engineer.id, actor=user, note=f"{quantity} × {stock.part.sku}")
    return usage


def reserve_part(request_id: int, user: User, part_id: int, quantity: int, source: str = "van") -> PartUsage:
    """Hold stock for this job."""
    req, engineer = work_order_for(request_id, user)
    _check_parts_step(req, quantity)
    stock = _stock(part_id, _location(engineer, source))
    if not _change_stock(stock.id, StockLevel.quantity - StockLevel.reserved >= quantity,
                         reserved=StockLevel.reserved + quantity):
        raise Conflict(f"not enough '{stock.part.name}' at {stock.location}")
    return _record_usage(req, engineer, user, stock, quantity, "reserved")


def consume_part(request_id: int, user: User, part_id: int, quantity: int, source: str = "van") -> PartUsage:
    """Use parts on the job: from this job's reservation when there is one, else from free stock."""
    req, engineer = work_order_for(request_id, user)
    _check_parts_step(req, quantity)
    stock = _stock(part_id, _location(engineer, source))
    reservation = db.session.scalar(select(PartUsage).where(
        PartUsage.request_id == req.id, PartUsage.stock_id == stock.id, PartUsage.status == "reserved",
        PartUsage.quantity >= quantity).order_by(PartUsage.id))
    if reservation is not None:
        if not _change_stock(stock.id, (StockLevel.reserved >= quantity) & (StockLevel.quantity >= quantity),
                             quantity=StockLevel.quantity - quantity, reserved=StockLevel.reserved - quantity):
            raise Conflict("the reservation no longer matches the stock")
        reservation.quantity -= quantity
        if reservation.quantity == 0:
            db.session.delete(reservation)
    elif not _change_stock(stock.id, StockLevel.quantity - StockLevel.reserved >= quantity,
                           quantity=StockLevel.quantity - quantity):
        raise Conflict(f"not enough '{stock.part.name}' at {stock.location}")
    return _record_usage(req, engineer, user, stock, quantity, "consumed")


def return_part(request_id: int, user: User, usage_id: int, quantity: int) -> PartUsage:
    """Give back a reservation, or parts taken but not used (they go back to the same stock)."""
    req, engineer = work_order_for(request_id, user)
    _check_parts_step(req, quantity)
    usage = db.session.get(PartUsage, usage_id)
    if usage is None or usage.request_id != req.id or usage.status not in ("reserved", "consumed"):
        raise NotFound(f"part usage {usage_id} does not exist on work order {req.id}")
    if quantity > usage.quantity:
        raise ValidationFailed("more than was taken", errors=[{"field": "quantity",
                                                              "message": f"at most {usage.quantity}"}])
    if usage.status == "reserved":
        ok = _change_stock(usage.stock_id, StockLevel.reserved >= quantity, reserved=StockLevel.reserved - quantity)
    else:
        ok = _change_stock(usage.stock_id, StockLevel.id == usage.stock_id, quantity=StockLevel.quantity + quantity)
    if not ok:
        raise Conflict("the stock changed meanwhile; try again")
    usage.quantity -= quantity
    returned = PartUsage(request_id=req.id, stock_id=usage.stock_id, part_id=usage.part_id, quantity=quantity,
                         status="released" if usage.status == "reserved" else "returned",
                         unit_price=usage.unit_price, created_at=utcnow())
    db.session.add(returned)
    if usage.quantity == 0:
        db.session.delete(usage)
    _log(req, "part_returned", engineer_id=engineer.id, actor=user, note=f"{quantity} × part {usage.part_id}")
    return returned


def search_parts(user: User, query: str = "", *, limit: int = 50, after_id: int | None = None) -> list[dict]:
    """Parts matching a text, with what is free in the engineer's van and in the warehouse."""
    engineer = engineer_of(user)
    stmt = select(Part).order_by(Part.id).limit(limit)
    if query:
        like = f"%{query.strip().lower()}%"
        stmt = stmt.where(func.lower(Part.name).like(like) | func.lower(Part.sku).like(like))
    if after_id:
        stmt = stmt.where(Part.id > after_id)
    parts = db.session.scalars(stmt).all()
    van = f"van:{engineer.id}"
    levels = db.session.scalars(select(StockLevel).where(StockLevel.part_id.in_([p.id for p in parts]),
                                                         StockLevel.location.in_([van, "warehouse"]))).all()
    free = {(s.part_id, s.location): s.quantity - s.reserved for s in levels}
    return [{"id": p.id, "sku": p.sku, "name": p.name, "product_line": p.product_line,
             "unit_price": float(p.unit_price), "van": free.get((p.id, van), 0),
             "warehouse": free.get((p.id, "warehouse"), 0)} for p in parts]


# -- views ---------------------------------------------------------------------------
def sla_state(req: ServiceRequest, now: datetime | None = None) -> dict:
    """Each SLA clock: due time, minutes left (negative when late), and ok / warning / breached / met."""
    now = now or utcnow()
    events = req.sla_events or {}
    out = {}
    for clock, due, done in (("response", req.response_due_at, req.responded_at),
                             ("resolution", req.resolution_due_at, req.resolved_at)):
        if due is None:
            out[clock] = {"due_at": None, "state": "pending", "minutes_left": None}
            continue
        if done is not None:
            state = "met" if done <= due else "breached"
        elif now > due or f"{clock}_breach" in events:
            state = "breached"
        elif f"{clock}_warning" in events:
            state = "warning"
        else:
            state = "ok"
        out[clock] = {"due_at": due.isoformat(), "state": state,
                      "minutes_left": None if done else round((due - now).total_seconds() / 60, 1)}
    return out


def asset_history(asset_id: int, *, exclude_request: int | None = None, limit: int = 20) -> list[dict]:
    """Earlier requests on an asset with their notes and parts used (newest first)."""
    reqs = db.session.scalars(select(ServiceRequest).where(ServiceRequest.asset_id == asset_id,
                                                           ServiceRequest.id != (exclude_request or 0))
                              .order_by(ServiceRequest.id.desc()).limit(limit)).all()
    usages = db.session.scalars(select(PartUsage).where(PartUsage.request_id.in_([r.id for r in reqs]),
                                                        PartUsage.status == "consumed")).all()
    by_request: dict[int, list] = {}
    for u in usages:
        by_request.setdefault(u.request_id, []).append({"sku": u.part.sku, "name": u.part.name,
                                                        "quantity": u.quantity})
    return [{"request_id": r.id, "created_at": r.created_at.isoformat(), "status": r.status,
             "description": r.description, "notes": r.work_notes, "first_time_fix": r.first_time_fix,
             "parts": by_request.get(r.id, [])} for r in reqs]


def list_requests(*, status: str | None = None, open_only: bool = False, engineer_id: int | None = None,
                  limit: int = 50, after_id: int | None = None) -> list[ServiceRequest]:
    """Requests for the dispatcher, newest first (cursor: ids below ``after_id``)."""
    stmt = select(ServiceRequest).order_by(ServiceRequest.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(ServiceRequest.status == status)
    if open_only:
        stmt = stmt.where(ServiceRequest.status.in_(OPEN_STATUSES))
    if engineer_id:
        stmt = stmt.where(ServiceRequest.engineer_id == engineer_id)
    if after_id:
        stmt = stmt.where(ServiceRequest.id < after_id)
    return db.session.scalars(stmt).all()


def engineer_work_orders(user: User, *, scope: str = "open", limit: int = 50, after_id: int | None = None):
    """The calling engineer's work orders: 'offered', 'open' (offered or active) or 'closed'."""
    engineer = engineer_of(user)
    statuses = {"offered": ("offered",), "open": OPEN_STATUSES, "closed": ("closed",)}.get(scope)
    if statuses is None:
        raise ValidationFailed("unknown scope", errors=[{"field": "scope", "message": "offered, open or closed"}])
    stmt = select(ServiceRequest).where(ServiceRequest.engineer_id == engineer.id,
                                        ServiceRequest.status.in_(statuses)).order_by(ServiceRequest.id).limit(limit)
    if after_id:
        stmt = stmt.where(ServiceRequest.id > after_id)
    return db.session.scalars(stmt).all()


def events_of(request_id: int) -> list[WorkOrderEvent]:
    """The status log of a request, oldest first."""
    return db.session.scalars(select(WorkOrderEvent).where(WorkOrderEvent.request_id == request_id)
                              .order_by(WorkOrderEvent.id)).all()


def create_account(name: str, tier: str = "normal", **extra) -> Account:
    """Add a customer account."""
    account = Account(name=name, tier=tier, **extra)
    db.session.add(account)
    return account


def create_asset(account: Account, serial: str, model: str, product_line: str, site_address: str, lat: float,
                 lon: float, **extra) -> Asset:
    """Add an installed asset."""
    asset = Asset(account_id=account.id, serial=serial, model=model, product_line=product_line.lower(),
                  site_address=site_address, lat=lat, lon=lon, qr_generation=1, **extra)
    db.session.add(asset)
    return asset





def request_detail(req: ServiceRequest) -> SimpleNamespace:
    """A request with its asset, engineer, status log, parts and the asset's earlier requests."""
    columns = {attr.key: getattr(req, attr.key) for attr in ServiceRequest.__mapper__.column_attrs}
    parts = db.session.scalars(select(PartUsage).where(PartUsage.request_id == req.id)
                               .order_by(PartUsage.id)).all()
    return SimpleNamespace(**columns, asset=req.asset, engineer=req.engineer, events=events_of(req.id),
                           history=asset_history(req.asset_id, exclude_request=req.id), parts=parts)
