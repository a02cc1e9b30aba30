"""What a job costs (parts + labour at the pricing table's rates, nothing under warranty or contract)
and taking the payment, once per work order."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import Conflict, ValidationFailed
from ..extensions import db
from .models import PAYMENT_METHODS, PartUsage, Payment, ServiceRequest
from .service_requests import get_request, log_event
from .workorders import complete_step, open_step, work_order_to_change

CENT = Decimal("0.01")


def money(value) -> Decimal:
    """A value as a Decimal rounded to cents (half up)."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def parts_total(req: ServiceRequest) -> Decimal:
    """The price of the parts consumed on a work order."""
    usages = db.session.scalars(select(PartUsage).where(PartUsage.request_id == req.id,
                                                        PartUsage.status == "consumed")).all()
    return sum((money(u.unit_price) * u.quantity for u in usages), Decimal("0.00"))


@register_service("price_job")
def price_job(request_id: int, hourly_rate: float, callout_fee: float) -> dict:
    """What the customer pays: parts + labour at the DMN's rates, nothing when warranty/contract covers it."""
    req = get_request(request_id)
    labour = money(Decimal(str(hourly_rate)) * Decimal(req.labour_minutes or 0) / 60)
    amount = Decimal("0.00") if req.covered_by else money(parts_total(req) + labour + money(callout_fee))
    req.amount_due = amount
    return {"amount": float(amount), "covered_by": req.covered_by}


def record_payment(request_id: int, user: User, method: str, amount, reference: str | None = None, *,
                   client: str | None = None) -> Payment:
    """Take the payment the job costs (once per work order) and move the BPMN on."""
    req, engineer = work_order_to_change(request_id, user)
    open_step(req, "take_payment", "take payment")
    errors = []
    if method not in PAYMENT_METHODS:
        errors.append({"field": "method", "message": f"one of {', '.join(PAYMENT_METHODS)}"})
    if method in ("card", "transfer") and not (reference or "").strip():
        errors.append({"field": "reference", "message": f"required for {method} payments"})
    if money(amount) != req.amount_due:
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
    log_event(req, "paid", engineer_id=engineer.id, actor=user, note=f"{method} {payment.amount}")
    complete_step(req, "take_payment", "take payment", {"payment_id": payment.id, "amount": float(payment.amount),
                                                        "method": method}, user, client)
    return payment

