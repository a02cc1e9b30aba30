"""RQ jobs of the after-sales domain: ids only, re-entering through the services."""

from __future__ import annotations

from ..db import transaction
from ..jobs.context import job_context
from ..jobs.queues import get_queue
from . import services


def redispatch_job() -> int:
    """Retry dispatch for the requests waiting in the dispatcher's queue (VIP first)."""
    with job_context(), transaction():
        return services.redispatch_waiting()


def enqueue_redispatch() -> None:
    """Queue a redispatch (called after the commit that made an engineer available)."""
    get_queue().enqueue(redispatch_job, at_front=True)
