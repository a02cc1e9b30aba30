"""Firing timers exactly once: a guarded ``fired_at IS NULL`` claim plus the instance's version; and
the query of due timers the poller hands to RQ."""

from __future__ import annotations

from sqlalchemy import select

from ..db import utcnow
from ..extensions import db
from ..metrics import TIMER_LATENESS
from . import store
from .audit import record_audit
from .models import ProcessInstance, Timer
from .runs import apply_result, get_engine, instance_ref, load_instance


class TimerNotDue(Exception):
    """The engine did not consider the timer due yet (clock skew); deliver later."""


def fire_timer(timer_id: int) -> bool:
    """Fire one timer exactly once: guarded ``fired_at IS NULL`` update plus the instance version.

    Returns False (and changes nothing) when it already fired, was cancelled, is not due,
    or its instance is not running.
    """
    timer = store.load_timer(timer_id)
    if timer is None or timer.fired_at is not None or timer.cancelled_at is not None:
        return False
    now = utcnow()
    if timer.due_at > now:
        return False
    instance = load_instance(timer.instance_id, lock=True)  # the instance row first, then the timer row
    if instance.status != "running" or not store.claim_timer(timer_id, now):
        return False
    result = get_engine().fire_timers(instance_ref(instance), instance.state)
    if any(t.guid == timer.task_guid and t.due_at == timer.due_at for t in result.timers):
        raise TimerNotDue(timer_id)
    record_audit("timer_fired", instance, element_id=timer.element_id,
                 data={"timer_id": timer.id, "due_at": timer.due_at.isoformat()})
    apply_result(instance, result, fired_timer_id=timer.id)
    TIMER_LATENESS.observe(max(0.0, (now - timer.due_at).total_seconds()))  # from what it loaded: no query
    return True


def due_timer_ids(now=None, limit: int = 5000) -> list[int]:
    """Ids of unfired, uncancelled timers due by ``now`` whose instance is running."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Timer.id).join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
        .where(Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at <= now,
               ProcessInstance.status == "running")
        .order_by(Timer.due_at).limit(limit))
    return [row[0] for row in rows]

