"""Service requests: lookups, the status log, intake (fault reports from a QR code or the desk, which
start the after-sales process), the asset's fault-report QR link, and the read side for the desk."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import select

from ..auth.models import User
from ..db import utcnow
from ..errors import Gone, NotFound, PermissionDenied, ValidationFailed
from ..extensions import db
from ..processes.instances import start_instance
from ..processes.models import HumanTask
from ..processes.runs import lock_instance
from . import tokens
from .models import PRIORITIES, Account, Asset, PartUsage, ServiceRequest, WorkOrderEvent

PROCESS_KEY = "after_sales_service"


OPEN_STATUSES = ("dispatching", "offered", "accepted", "en_route", "on_site", "work_done")


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


def lock_process_of(request_id: int) -> None:
    """Before an action changes a request and then advances its process: lock the process instance first
    (the lock order every writer follows, so a timer firing on the same request meanwhile cannot deadlock
    with it), then re-read the request as it is now."""
    req = db.session.get(ServiceRequest, request_id)
    if req is not None and req.instance_id is not None:
        lock_instance(req.instance_id)
        db.session.refresh(req)


def log_event(req: ServiceRequest, status: str, *, engineer_id: int | None = None, actor: User | None = None,
              lat: float | None = None, lon: float | None = None, note: str | None = None) -> None:
    """Append a status event to the request's log (what the desk and the customer see)."""
    db.session.add(WorkOrderEvent(request_id=req.id, status=status, engineer_id=engineer_id,
                                  actor_id=actor.id if actor else None, lat=lat, lon=lon, note=note, at=utcnow()))


def _coverage(asset: Asset, today: date) -> str | None:
    if asset.warranty_end and asset.warranty_end >= today:
        return "warranty"
    if asset.contract_end and asset.contract_end >= today:
        return "contract"
    return None


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
    log_event(req, "reported", actor=actor, note=source)
    view = start_instance(
        PROCESS_KEY, {"request_id": req.id, "tier": req.tier, "priority": req.priority,
                      "product_line": asset.product_line, "covered_by": req.covered_by},
        business_key=f"SR-{req.id}", actor=actor, client=client)
    req.instance_id = view["instance"].id
    return req, True


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


def events_of(request_id: int) -> list[WorkOrderEvent]:
    """The status log of a request, oldest first."""
    return db.session.scalars(select(WorkOrderEvent).where(WorkOrderEvent.request_id == request_id)
                              .order_by(WorkOrderEvent.id)).all()


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


def request_detail(req: ServiceRequest) -> SimpleNamespace:
    """A request with its asset, engineer, status log, parts and the asset's earlier requests."""
    columns = {attr.key: getattr(req, attr.key) for attr in ServiceRequest.__mapper__.column_attrs}
    parts = db.session.scalars(select(PartUsage).where(PartUsage.request_id == req.id)
                               .order_by(PartUsage.id)).all()
    return SimpleNamespace(**columns, asset=req.asset, engineer=req.engineer, events=events_of(req.id),
                           history=asset_history(req.asset_id, exclude_request=req.id), parts=parts)


FOLLOW_UP_ELEMENTS = ("dispatch_manually", "review_response_breach", "review_resolution_breach",
                      "follow_up_low_rating")


def desk_follow_ups(limit: int = 100) -> list[HumanTask]:
    """Open desk work: manual dispatches, SLA breach reviews, low-rating follow-ups (oldest first)."""
    return db.session.scalars(select(HumanTask).where(HumanTask.element_id.in_(FOLLOW_UP_ELEMENTS),
                                                      HumanTask.status == "open")
                              .order_by(HumanTask.id).limit(limit)).all()


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

