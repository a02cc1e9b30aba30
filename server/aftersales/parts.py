"""Parts on a job: reserve, consume and return stock from the van or the warehouse — conditional
updates, so concurrent jobs never take stock below zero — and the parts search."""

from __future__ import annotations

from sqlalchemy import func, select, update

from ..auth.models import User
from ..db import utcnow
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from .engineers import engineer_of
from .models import Engineer, Part, PartUsage, ServiceRequest, StockLevel
from .service_requests import log_event
from .workorders import work_order_for


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
    log_event(req, f"part_{status}", engineer_id=engineer.id, actor=user, note=f"{quantity} × {stock.part.sku}")
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
    log_event(req, "part_returned", engineer_id=engineer.id, actor=user, note=f"{quantity} × part {usage.part_id}")
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

