"""Work orders as the engineer sees them: their own requests only, with the request's process locked
before an action changes it, and the open BPMN step an action completes."""

from __future__ import annotations

from sqlalchemy import select

from ..auth.models import User
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..processes.models import HumanTask
from ..processes.tasks import complete_task
from .engineers import engineer_of
from .models import Engineer, ServiceRequest
from .service_requests import OPEN_STATUSES, lock_process_of


def work_order_for(request_id: int, user: User) -> tuple[ServiceRequest, Engineer]:
    """A work order of the calling engineer; someone else's is reported as not found."""
    engineer = engineer_of(user)
    req = db.session.get(ServiceRequest, request_id)
    if req is None or req.engineer_id != engineer.id:
        raise NotFound(f"work order {request_id} does not exist")
    return req, engineer


def work_order_to_change(request_id: int, user: User) -> tuple[ServiceRequest, Engineer]:
    """``work_order_for``, with the request's process locked for this transaction (for actions)."""
    lock_process_of(request_id)
    return work_order_for(request_id, user)


def open_step(req: ServiceRequest, element_id: str, action: str) -> HumanTask:
    """The open BPMN task at ``element_id`` of a request's process, or Conflict naming the action."""
    task = db.session.scalar(select(HumanTask).where(HumanTask.instance_id == req.instance_id,
                                                     HumanTask.element_id == element_id,
                                                     HumanTask.status == "open"))
    if task is None:
        raise Conflict(f"work order {req.id} is {req.status}: cannot {action} now")
    return task


def complete_step(req: ServiceRequest, element_id: str, action: str, data: dict, actor: User,
                  client: str | None) -> dict:
    """Complete the request's open task at ``element_id`` through the process services."""
    task = open_step(req, element_id, action)
    return complete_task(task.id, data, actor, client=client)


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

