"""The RQ worker bootstrap. We use RQ's SimpleWorker (no fork per job): every
engine run is bounded, and keeping one process warm keeps the per-version spec
cache and DB pool alive. Each job gets its own app context and session."""

from __future__ import annotations

import itertools
import logging
import signal
import threading

import redis
from flask import Flask
from rq import Queue, SimpleWorker, worker_registration

from .context import set_worker_app
from .queues import ALL_QUEUES, get_redis

log = logging.getLogger(__name__)

# /api/v1/health counts a worker alive while its last heartbeat is younger than this.
HEARTBEAT_FRESH_SECONDS = 120


class FlowdeskWorker(SimpleWorker):
    """RQ's SimpleWorker, kept visible to the health check and ``rq info``.

    An idle RQ worker beats once per blocking dequeue (``worker_ttl`` − 15 s, 405 s by default), so
    ``worker_ttl`` is set to make it beat well within HEARTBEAT_FRESH_SECONDS. And RQ lists a worker
    only in the registry it joins at birth: after Redis lost its data (restarted without persistence,
    flushed) a live worker kept working but was listed nowhere, so each beat re-registers it if needed.
    RQ's scheduler process dies when Redis goes away and the worker restarts it at its next maintenance
    round: every minute here instead of every ten."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("worker_ttl", HEARTBEAT_FRESH_SECONDS // 2)
        kwargs.setdefault("maintenance_interval", 60)
        super().__init__(*args, **kwargs)
        self.stop_asked = False

    def request_stop(self, signum, frame):
        """RQ's warm shutdown on SIGINT/SIGTERM, remembered: RQ itself marks only a busy worker as asked
        to stop (an idle one just leaves its loop), which the restart loop took for a lost Redis."""
        self.stop_asked = True
        super().request_stop(signum, frame)

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        """RQ's heartbeat, then the worker's registration and description restored if Redis lost them."""
        super().heartbeat(timeout, pipeline)
        if pipeline is None and self.birth_date is not None and \
                not self.connection.sismember(self.redis_workers_keys, self.key):
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipe)
                pipe.expire(self.key, timeout or self.worker_ttl + 60)
                pipe.execute()


def _wait_for_redis(conn: redis.Redis) -> bool:
    """Wait until Redis answers again; False when SIGINT/SIGTERM came meanwhile (stop means stop)."""
    asked = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: asked.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not asked.wait(1):
            try:
                conn.ping()
                return True
            except redis.RedisError:
                continue
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_worker(app: Flask, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False,
               with_scheduler: bool = True, name: str | None = None) -> None:
    """Work the queues until stopped (or until empty with ``burst``), with RQ's scheduler.

    RQ's loop gives up when Redis goes away in the middle of a job (it cannot record the job's end) and
    its teardown fails as well: a Redis restart used to end every busy worker process. So unless a stop
    was asked for (SIGTERM/SIGINT: then it ends, after the job in hand), wait for Redis and start a fresh
    worker; the job in hand was rolled back or committed whole, and a timer it carried is handed over
    again by the poller."""
    set_worker_app(app)
    with app.app_context():
        conn = get_redis()
    for attempt in itertools.count():
        worker = FlowdeskWorker([Queue(q, connection=conn) for q in queues], connection=conn,
                                name=f"{name}-{attempt}" if name and attempt else name)
        try:
            worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
        except redis.RedisError as err:  # from RQ's teardown, which could not unregister or unsubscribe
            log.warning("worker %s lost Redis (%s)", worker.name, err)
            if worker.pubsub_thread is not None:
                worker.pubsub_thread.stop()  # its listener for RQ's commands (closes its connection on exit)
        if burst or worker.stop_asked:
            return
        log.warning("worker %s lost Redis; starting a fresh one once Redis answers", worker.name)
        if not _wait_for_redis(conn):
            log.info("worker %s: stop asked while Redis was away", worker.name)
            return
