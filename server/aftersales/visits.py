"""On site: travel status, the repair report (fixed, or another visit), and finishing the job."""

from __future__ import annotations

from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import Conflict, ValidationFailed
from .engineers import set_position
from .models import ServiceRequest
from .rating import job_sheet
from .service_requests import get_request, log_event
from .workorders import complete_step, open_step, work_order_to_change


def update_status(request_id: int, user: User, status: str, lat: float | None = None, lon: float | None = None,
                  *, client: str | None = None) -> ServiceRequest:
    """En route (a note on the way) or on site (ends the travel step of the BPMN)."""
    req, engineer = work_order_to_change(request_id, user)
    if lat is not None and lon is not None:
        set_position(engineer, lat, lon)
    if status == "en_route":
        if req.status not in ("accepted", "en_route"):
            raise Conflict(f"work order {req.id} is {req.status}: cannot set en route now")
        req.status = "en_route"
        log_event(req, "en_route", engineer_id=engineer.id, actor=user, lat=lat, lon=lon)
    elif status == "on_site":
        open_step(req, "travel_to_site", "arrive")
        req.status = "on_site"
        log_event(req, "on_site", engineer_id=engineer.id, actor=user, lat=lat, lon=lon)
        complete_step(req, "travel_to_site", "arrive", {"arrived": True}, user, client)
    else:
        raise ValidationFailed("unknown status", errors=[{"field": "status", "message": "en_route or on_site"}])
    return req


def report_work_done(request_id: int, user: User, fixed: bool, notes: str, labour_minutes: int, *,
                     client: str | None = None) -> ServiceRequest:
    """The repair report: notes and labour; not fixed means another visit."""
    req, engineer = work_order_to_change(request_id, user)
    open_step(req, "repair", "report work done")
    req.work_notes = "\n".join(filter(None, [req.work_notes, notes]))
    req.labour_minutes = (req.labour_minutes or 0) + labour_minutes
    complete_step(req, "repair", "report work done", {"fixed": fixed, "notes": notes,
                                                      "labour_minutes": labour_minutes}, user, client)
    return req


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
    log_event(req, "work_done" if fixed else "revisit_needed", engineer_id=req.engineer_id)
    return True


def complete_job(request_id: int, user: User, summary: str = "", *, client: str | None = None) -> dict:
    """Finish the job: the BPMN closes it and the job sheet with its rating QR is returned."""
    req, _ = work_order_to_change(request_id, user)
    complete_step(req, "complete_job", "complete the job", {"summary": summary}, user, client)
    return job_sheet(req)

