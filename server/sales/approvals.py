"""Discount approvals: the steps ``discount_approval.bpmn`` calls (routing, reminders, escalation, the
outcome), and what approvers do from a phone (pending list with the deal context, approve / reject,
delegate, their history)."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select

from ..aftersales.models import Account
from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..processes.audit import record_audit
from ..processes.models import AuditEvent, HumanTask, ProcessInstance
from ..processes.tasks import can_act_on, complete_task
from .models import Quote
from .quotes import quote_totals

AUTHORITY = {"sales_manager": 1, "director": 2, "finance": 2, "admin": 3}


@register_service("request_quote_approval")
def request_quote_approval(quote_id: int, approval_chain: list) -> bool:
    """Within the rep's authority the quote is approved at once; else it waits for the chain."""
    quote = db.session.get(Quote, quote_id)
    quote.approval_chain = list(approval_chain)
    quote.status = "pending" if approval_chain else "approved"
    return not approval_chain


@register_service("record_approval_step")
def record_approval_step(quote_id: int, level: str, role: str) -> bool:
    """Note which level the approval has reached."""
    quote = db.session.get(Quote, quote_id)
    quote.decisions = [*(quote.decisions or []), {"event": "routed", "level": level, "role": role,
                                                  "at": utcnow().isoformat()}]
    return True


@register_service("record_approval_reminder")
def record_approval_reminder(quote_id: int, level: str) -> bool:
    """The approver sat on it for the first interval."""
    quote = db.session.get(Quote, quote_id)
    quote.decisions = [*(quote.decisions or []), {"event": "reminded", "level": level, "at": utcnow().isoformat()}]
    record_audit("approval_reminder", data={"quote_id": quote_id, "level": level})
    return True


@register_service("record_approval_escalation")
def record_approval_escalation(quote_id: int, from_level: str, to_level: str) -> bool:
    """The approver sat on it for the second interval: the step moves up a level."""
    quote = db.session.get(Quote, quote_id)
    quote.decisions = [*(quote.decisions or []), {"event": "escalated", "from": from_level, "to": to_level,
                                                  "at": utcnow().isoformat()}]
    record_audit("approval_escalated", data={"quote_id": quote_id, "from": from_level, "to": to_level})
    return True


@register_service("finish_quote_approval")
def finish_quote_approval(quote_id: int, approved: bool, reason: str = "") -> bool:
    """The chain approved (the quote may be sent) or someone rejected (the rep revises)."""
    quote = db.session.get(Quote, quote_id)
    quote.status = "approved" if approved else "rejected"
    quote.decisions = [*(quote.decisions or []), {"event": "approved" if approved else "rejected",
                                                  "reason": reason, "at": utcnow().isoformat()}]
    return bool(approved)


def _approval_tasks_query():
    return select(HumanTask).where(HumanTask.element_id == "approve_discount", HumanTask.status == "open")


def pending_approvals(user: User) -> list[HumanTask]:
    """Open discount approvals the user may decide (assigned to them, or for one of their roles)."""
    tasks = db.session.scalars(_approval_tasks_query().order_by(HumanTask.id)).all()
    return [t for t in tasks if can_act_on(t, user)]


def approval_task(task_id: int, user: User) -> HumanTask:
    """An approval task the user may act on (others are not found)."""
    task = db.session.get(HumanTask, task_id)
    if task is None or task.element_id != "approve_discount" or not can_act_on(task, user):
        raise NotFound(f"approval {task_id} does not exist")
    return task


def approval_context(task: HumanTask) -> dict:
    """The deal behind an approval: account, opportunity, lines, margin, the approval history."""
    data = db.session.get(ProcessInstance, task.instance_id).data or {}
    quote = db.session.get(Quote, data.get("quote_id"))
    if quote is None:
        raise NotFound("the quote of this approval does not exist")
    opp = quote.opportunity
    account = db.session.get(Account, opp.account_id)
    owner = db.session.get(User, opp.owner_id)
    routed = [d for d in quote.decisions or [] if d.get("event") == "routed"]
    return {
        "task_id": task.id, "status": task.status, "level": routed[-1]["level"] if routed else None,
        "quote": {"id": quote.id, "status": quote.status, "discount_percent": float(quote.discount_percent),
                  **quote_totals(quote)},
        "opportunity": {"id": opp.id, "name": opp.name, "stage": opp.stage, "owner": owner.full_name or owner.username},
        "account": {"id": account.id, "name": account.name, "tier": account.tier},
        "lines": [{"sku": line.product.sku, "name": line.product.name, "quantity": line.quantity,
                   "unit_price": float(line.unit_price)} for line in quote.lines],
        "history": quote.decisions or [],
    }


def decide_approval(task_id: int, user: User, decision: str, reason: str | None, *, client: str | None) -> dict:
    """Approve or reject (a reason is required, the form says so) through the process."""
    task = approval_task(task_id, user)
    data = {"decision": decision}
    if reason:
        data["reason"] = reason
    context = approval_context(task)
    complete_task(task.id, data, user, client=client)
    quote = db.session.get(Quote, context["quote"]["id"])
    quote.decisions = [*(quote.decisions or []), {"event": decision, "by": user.username, "reason": reason or "",
                                                  "at": utcnow().isoformat(), "client": client}]
    return context


def delegate_approval(task_id: int, user: User, delegate_id: int, *, client: str | None) -> HumanTask:
    """Hand an approval to a named colleague with the same or higher authority."""
    task = approval_task(task_id, user)
    delegate = db.session.get(User, delegate_id)
    needed = AUTHORITY.get(task.candidate_role or "", 1)
    best = max((AUTHORITY.get(role, 0) for role in (delegate.roles if delegate else [])), default=0)
    if delegate is None or not delegate.active or best < needed or delegate.id == user.id:
        raise ValidationFailed("delegate to a colleague with the same or higher approval authority",
                               errors=[{"field": "delegate_id", "message": "not allowed to approve this level"}])
    role = max((r for r in delegate.roles if r in AUTHORITY), key=lambda r: AUTHORITY[r])
    task.assignee_id, task.candidate_role = delegate.id, role
    record_audit("approval_delegated", task.instance_id and _instance_ref(task.instance_id),
                 actor=user, client=client, element_id=task.element_id,
                 data={"task_id": task.id, "to": delegate.id})
    return task


def possible_delegates(user: User) -> list[User]:
    """Colleagues who hold some approval authority (the delegate list of the approval page)."""
    users = db.session.scalars(select(User).where(User.active.is_(True), User.id != user.id)
                               .order_by(User.full_name, User.username)).all()
    return [u for u in users if any(role in AUTHORITY for role in u.roles)]


def decisions_by(user: User, *, limit: int = 100) -> list[dict]:
    """The approval decisions and delegations ``user`` took, newest first, with the deal they were about."""
    rows = db.session.execute(
        select(AuditEvent, ProcessInstance.data).join(ProcessInstance, ProcessInstance.id == AuditEvent.instance_id)
        .where(AuditEvent.actor_id == user.id, AuditEvent.element_id == "approve_discount",
               AuditEvent.event.in_(("task_completed", "approval_delegated")))
        .order_by(AuditEvent.id.desc()).limit(limit)).all()
    quotes = {q.id: q for q in db.session.scalars(select(Quote).where(
        Quote.id.in_({(data or {}).get("quote_id") for _, data in rows})))}
    out = []
    for event, data in rows:
        quote = quotes.get((data or {}).get("quote_id"))
        details = (event.data or {}).get("data") or {}
        out.append({"at": event.created_at, "decision": details.get("decision") or "delegate",
                    "reason": details.get("reason"), "quote": quote,
                    "deal": quote.opportunity.name if quote else None})
    return out


def _instance_ref(instance_id: int):
    return SimpleNamespace(id=instance_id)

