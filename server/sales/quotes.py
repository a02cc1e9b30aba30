"""Quotes from the price list (totals and margin), sending an approved quote, and the contract an
accepted quote becomes."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from .models import Contract, Product, Quote, QuoteLine, Team
from .opportunities import get_opportunity


def quote_totals(quote: Quote) -> dict:
    """List value, discounted value and margin of a quote."""
    list_value = sum((line.unit_price * line.quantity for line in quote.lines), Decimal("0"))
    cost = sum((line.unit_cost * line.quantity for line in quote.lines), Decimal("0"))
    value = (list_value * (100 - quote.discount_percent) / 100).quantize(Decimal("0.01"))
    margin = value - cost
    return {"list_value": float(list_value), "value": float(value), "cost": float(cost), "margin": float(margin),
            "margin_percent": round(float(margin / value * 100), 1) if value else None}


@register_service("quote_terms")
def quote_terms(quote_id: int) -> dict:
    """What the approval rules look at: the discount, the deal value, the rep's team manager."""
    quote = db.session.get(Quote, quote_id)
    if quote is None:
        raise NotFound(f"quote {quote_id} does not exist")
    team = db.session.get(Team, quote.opportunity.team_id) if quote.opportunity.team_id else None
    return {"discount_percent": float(quote.discount_percent), "value": quote_totals(quote)["value"],
            "team_manager_id": team.manager_id if team else None}


def create_quote(opportunity_id: int, lines: list[dict], discount_percent, user: User) -> Quote:
    """A quote on an opportunity from price-list products (prices and costs copied at quoting time)."""
    opp = get_opportunity(opportunity_id, user)
    if opp.stage != "quote_negotiation":
        raise Conflict(f"opportunity {opp.id} is at '{opp.stage}': quotes come at 'quote_negotiation'")
    discount = Decimal(str(discount_percent))
    if not Decimal("0") <= discount <= Decimal("100"):
        raise ValidationFailed("discount out of range", errors=[{"field": "discount_percent", "message": "0–100"}])
    quote = Quote(opportunity_id=opp.id, status="draft", discount_percent=discount, approval_chain=[],
                  decisions=[], created_at=utcnow())
    db.session.add(quote)
    db.session.flush()
    for n, line in enumerate(lines):
        product = db.session.get(Product, line.get("product_id"))
        if product is None:
            raise ValidationFailed("unknown product", errors=[{"field": f"lines[{n}].product_id",
                                                               "message": "does not exist"}])
        db.session.add(QuoteLine(quote_id=quote.id, product_id=product.id, quantity=int(line.get("quantity", 1)),
                                 unit_price=product.list_price, unit_cost=product.unit_cost))
    db.session.flush()
    db.session.refresh(quote)
    return quote


def send_quote(quote_id: int, user: User) -> Quote:
    """Mark a quote as sent to the customer — only once its discount is approved."""
    quote = db.session.get(Quote, quote_id)
    if quote is None:
        raise NotFound(f"quote {quote_id} does not exist")
    get_opportunity(quote.opportunity_id, user)
    if quote.status != "approved":
        raise Conflict(f"quote {quote.id} is {quote.status}: it can be sent once approved")
    quote.status, quote.sent_at = "sent", utcnow()
    return quote


def quotes_of(opportunity_id: int) -> list[Quote]:
    """An opportunity's quotes, newest first."""
    return db.session.scalars(select(Quote).where(Quote.opportunity_id == opportunity_id)
                              .order_by(Quote.id.desc())).all()


@register_service("create_contract")
def create_contract(quote_id: int) -> int:
    """The accepted quote becomes a draft contract."""
    quote = db.session.get(Quote, quote_id)
    if quote.status not in ("approved", "sent"):
        raise Conflict(f"quote {quote_id} is {quote.status}: only an approved quote becomes a contract")
    contract = Contract(opportunity_id=quote.opportunity_id, quote_id=quote.id,
                        value=Decimal(str(quote_totals(quote)["value"])), status="draft")
    db.session.add(contract)
    db.session.flush()
    return contract.id

