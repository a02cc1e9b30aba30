"""The timer poller: the database is the source of truth for timers; this loop
hands every due, unfired timer to RQ. Each hand-over is claimed in Redis with
``SET NX EX``, so of several pollers (one per machine) exactly one enqueues a
given timer. While the job waits in the queue the claim lasts
``QUEUED_CLAIM_PERIODS`` × ``TIMER_REDELIVER_SECONDS`` (a long backlog is not
handed over again); when a worker starts the job it re-arms the claims to
``TIMER_REDELIVER_SECONDS``, so a timer not fired by then (worker killed) or
whose claim is gone (Redis flushed) is handed over again. The guarded update
in ``fire_timer`` makes any extra delivery harmless: a timer fires at most
once whatever RQ does."""

from __future__ import annotations

import logging
import time

from flask import current_app

from ..db import utcnow
from ..extensions import db
from ..processes import timers
from ..processes.jobs import GIVEN_BACK_KEY, QUEUED_CLAIM_PERIODS, fire_timers_job, handed_key, redeliver_seconds
from .queues import TIMERS, get_queue, get_redis

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "flowdesk:poller:heartbeat"


def enqueue_due_timers(now=None, handed: dict[int, float] | None = None) -> int:
    """Enqueue a fire job for each due timer no poller has handed to RQ recently; returns how many.

    ``handed`` (timer id → ``time.monotonic()`` of the hand-over) is the calling poller's memory of
    its own hand-overs: timers it handed within the last redeliver period are not claimed again, so a
    backlog waiting in the queue costs each round one query rather than a Redis command per timer."""
    now = now or utcnow()
    ids = timers.due_timer_ids(now)
    db.session.rollback()  # end the read transaction before talking to Redis
    conn = get_redis()
    if handed is not None:
        recent = time.monotonic() - redeliver_seconds()
        with conn.pipeline() as pipe:  # MULTI: read and clear the given-back set at once
            given_back, _ = pipe.smembers(GIVEN_BACK_KEY).delete(GIVEN_BACK_KEY).execute()
        for timer_id in [t for t, at in handed.items() if at < recent] + [int(t) for t in given_back]:
            handed.pop(timer_id, None)
        ids = [timer_id for timer_id in ids if timer_id not in handed]
    if not ids:
        return 0
    queued_claim = QUEUED_CLAIM_PERIODS * redeliver_seconds()
    wall = int(time.time())
    with conn.pipeline(transaction=False) as pipe:
        for timer_id in ids:
            pipe.set(handed_key(timer_id), wall, nx=True, ex=queued_claim)
        claimed = pipe.execute()
    todo = [timer_id for timer_id, won in zip(ids, claimed, strict=True) if won]
    if handed is not None:
        handed.update(dict.fromkeys(todo, time.monotonic()))
    if not todo:
        return 0
    queue = get_queue(TIMERS)
    size = max(1, int(current_app.config.get("TIMER_BATCH", 50)))
    batches = [todo[n:n + size] for n in range(0, len(todo), size)]  # in due order: the most overdue first
    with conn.pipeline() as pipe:
        jobs = [queue.prepare_data(fire_timers_job, args=(batch,), job_id=f"timers-{batch[0]}-{wall}",
                                   result_ttl=60, failure_ttl=3600) for batch in batches]
        queue.enqueue_many(jobs, pipeline=pipe)
        pipe.execute()
    return len(todo)


def beat() -> None:
    """Record that the poller is alive (read by /api/v1/health)."""
    get_redis().set(HEARTBEAT_KEY, int(time.time()), ex=60)


def run_poller(interval: float | None = None, iterations: int | None = None) -> None:
    """Poll forever (or ``iterations`` times), sleeping ``interval`` seconds between rounds."""
    interval = interval or current_app.config["TIMER_POLL_SECONDS"]
    done = 0
    handed: dict[int, float] = {}
    while iterations is None or done < iterations:
        started = time.monotonic()
        try:
            count = enqueue_due_timers(handed=handed)
            beat()
            if count:
                log.info("enqueued %d due timers", count)
        except Exception:  # noqa: BLE001 - keep polling through transient DB/Redis faults
            log.exception("timer poll failed")
            db.session.rollback()
        db.session.remove()
        done += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
