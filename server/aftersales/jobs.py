"""RQ jobs of the after-sales domain: ids only, re-entering through the services."""

from __future__ import annotations

from ..db import transaction
from ..jobs.context import job_context
from . import offers


def redispatch_job() -> int:
    """Retry dispatch for the requests waiting in the dispatcher's queue (VIP first)."""
    with job_context(), transaction():
        return offers.redispatch_waiting()
