"""RQ jobs of the process domain. Each carries only an id and re-enters the
engine through the same services as HTTP, inside one transaction."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from ..db import is_concurrency_failure, transaction
from ..errors import Conflict
from ..jobs.context import job_context
from ..jobs.queues import get_redis
from . import timers

log = logging.getLogger(__name__)

# A hand-over's claim while its job waits in the queue, in redeliver periods: a backlog longer than one
# period must not hand the same timers over again (each copy is more work for workers already behind).
QUEUED_CLAIM_PERIODS = 15


# Timers a job gave back unfired (conflict, not due yet by its clock): pollers forget having handed
# them over, so they are handed over again at the next round.
GIVEN_BACK_KEY = "flowdesk:timers:given-back"


def handed_key(timer_id: int) -> str:
    """The Redis key a poller sets (NX, with an expiry) when it hands a timer to RQ; the job deletes it."""
    return f"flowdesk:timers:handed:{timer_id}"


def redeliver_seconds() -> int:
    """How long a started job may take to fire its timers before they are handed over again."""
    from flask import current_app

    return max(1, round(current_app.config.get("TIMER_REDELIVER_SECONDS", 60.0)))


def arm_redelivery(timer_ids: list[int]) -> None:
    """A job starting on its timers: from now on, one that is not fired within the redeliver period (the
    worker was killed) is handed over again. Until then the poller's longer queued claim held them."""
    with get_redis().pipeline(transaction=False) as pipe:
        for timer_id in timer_ids:
            pipe.set(handed_key(timer_id), "started", ex=redeliver_seconds())
        pipe.execute()


def _fire_one(timer_id: int) -> str:
    try:
        with transaction():
            fired = timers.fire_timer(timer_id)
    except Conflict:
        # The instance moved on concurrently: forget it so the poller re-delivers at once.
        outcome = "conflict"
    except timers.TimerNotDue:
        outcome = "not-due"
    except OperationalError as err:
        if not is_concurrency_failure(err):
            raise
        outcome = "conflict"  # a deadlock victim: rolled back, handed over again at the next poll
    else:
        outcome = "fired" if fired else "skipped"
    with get_redis().pipeline(transaction=False) as pipe:
        pipe.delete(handed_key(timer_id))
        if outcome != "fired":
            pipe.sadd(GIVEN_BACK_KEY, timer_id)
        pipe.execute()
    log.debug("timer %s %s", timer_id, outcome)
    return outcome


def fire_timer_job(timer_id: int) -> str:
    """Fire one timer; safe to deliver any number of times (fires at most once). The poller hands over
    batches (``fire_timers_job``); this stays for jobs queued by earlier releases during an upgrade."""
    with job_context():
        arm_redelivery([timer_id])
        return _fire_one(timer_id)


def fire_timers_job(timer_ids: list[int]) -> dict[str, int]:
    """Fire a batch of timers, each in its own transaction (one failing does not hold up the others).

    The poller hands due timers over in batches: RQ's own work per job (fetch, status, registries,
    result) costs about 2.5 firings of CPU, so one job per timer caps delivery far below what the
    database can do. A killed worker loses nothing: each timer not fired is handed over again."""
    outcomes: dict[str, int] = {}
    with job_context():
        arm_redelivery(timer_ids)
        for timer_id in timer_ids:
            outcome = _fire_one(timer_id)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    log.info("timers %s…: %s", timer_ids[0] if timer_ids else "-", outcomes)
    return outcomes
