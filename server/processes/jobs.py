"""RQ jobs of the process domain. Each carries only an id and re-enters the
engine through the same services as HTTP, inside one transaction."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from ..db import is_concurrency_failure, transaction
from ..errors import Conflict
from ..jobs.context import job_context
from ..jobs.queues import get_redis
from . import services

log = logging.getLogger(__name__)



def handed_key(timer_id: int) -> str:
    """The Redis key a poller sets (NX, with an expiry) when it hands a timer to RQ; the job deletes it."""
    return f"flowdesk:timers:handed:{timer_id}"


def record_lateness(timer_id: int) -> None:
    """Observe how late a fired timer was (fired_at − due_at) for the metrics."""
    from ..extensions import db
    from ..observability import TIMER_LATENESS
    from .models import Timer

    timer = db.session.get(Timer, timer_id)
    if timer is not None and timer.fired_at is not None:
        TIMER_LATENESS.observe(max(0.0, (timer.fired_at - timer.due_at).total_seconds()))


def fire_timer_job(timer_id: int) -> str:
    """Fire one timer; safe to deliver any number of times (fires at most once)."""
    with job_context():
        try:
            with transaction():
                fired = services.fire_timer(timer_id)
        except Conflict:
            # The instance moved on concurrently: forget it so the poller re-delivers at once.
            outcome = "conflict"
        except services.TimerNotDue:
            outcome = "not-due"
        except OperationalError as err:
            if not is_concurrency_failure(err):
                raise
            outcome = "conflict"  # a deadlock victim: rolled back, delivered again at the next poll
        else:
            outcome = "fired" if fired else "skipped"
            if fired:
                record_lateness(timer_id)
        get_redis().delete(handed_key(timer_id))
        log.info("timer %s %s", timer_id, outcome)
        return outcome
