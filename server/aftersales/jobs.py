"""RQ jobs of the after-sales domain: ids only, re-entering through the services."""

from __future__ import annotations

import logging

import redis

from ..db import transaction
from ..jobs.context import job_context
from ..jobs.queues import get_queue
from . import services

log = logging.getLogger(__name__)


def redispatch_job() -> int:
    """Retry dispatch for the requests waiting in the dispatcher's queue (VIP first)."""
    with job_context(), transaction():
        return services.redispatch_waiting()


def enqueue_redispatch() -> None:
    """Queue a redispatch (called after the commit that made an engineer available). Best effort: when
    Redis does not answer, the waiting requests stay in the dispatcher's queue with their escalation
    timer until the next engineer becomes available or a dispatcher acts (the change itself is saved)."""
    try:
        get_queue().enqueue(redispatch_job, at_front=True)
    except redis.RedisError as err:
        log.warning("redispatch not queued: Redis unavailable (%s)", err)
