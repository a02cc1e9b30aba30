"""Closing a job: the job sheet with its single-use rating link (QR), and the customer's rating,
handed to the process (a low rating opens a follow-up task)."""

from __future__ import annotations

import secrets

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..db import utcnow
from ..engine import register_service
from ..errors import Gone, PermissionDenied, ValidationFailed
from ..extensions import db
from ..processes.messages import deliver_message
from . import tokens
from .engineers import release_engineer
from .models import PartUsage, Payment, Rating, ServiceRequest
from .service_requests import get_request, log_event


@register_service("close_job")
def close_job(request_id: int) -> dict:
    """Close the work order: free the engineer and issue the single-use rating link."""
    req = get_request(request_id)
    req.status, req.closed_at = "closed", utcnow()
    req.rating_jti = secrets.token_hex(16)
    release_engineer(req.engineer_id)
    log_event(req, "closed", engineer_id=req.engineer_id)
    return {"closed_at": req.closed_at.isoformat()}


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
    log_event(req, "rated", note=f"{stars} stars")
    deliver_message("rating_received", f"SR-{req.id}", {"rating_stars": stars,
                                                        "rating_comment": rating.comment or ""},
                    client=client)
    return rating

