"""RQ jobs of the process domain. Each carries only an id and re-enters the
engine through the same services as HTTP, inside one transaction."""

from __future__ import annotations

import logging

from ..db import transaction
from ..errors import Conflict
from ..jobs.context import job_context
from ..jobs.queues import get_redis
from . import services

log = logging.getLogger(__name__)

# Timers handed to RQ and not yet fired: timer id -> enqueue time (a Redis sorted set).
ENQUEUED_KEY = "flowdesk:timers:enqueued"


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
        else:
            outcome = "fired" if fired else "skipped"
        get_redis().zrem(ENQUEUED_KEY, timer_id)
        log.info("timer %s %s", timer_id, outcome)
        return outcome
