"""SLA clocks: deadlines from the SLA decision table, warnings and breaches noted when the BPMN's timers
fire, escalation, and each clock's state for the desk and the customer."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..db import utcnow
from ..engine import register_service
from .models import ServiceRequest
from .service_requests import get_request, log_event


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
    log_event(req, f"sla_{clock}_{level}")
    return True


@register_service("escalate_request")
def escalate_request(request_id: int, reason: str) -> bool:
    """Mark a request escalated to the service manager."""
    req = get_request(request_id)
    req.escalated_at = req.escalated_at or utcnow()
    log_event(req, "escalated", note=reason)
    return True


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

