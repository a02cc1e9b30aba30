"""The RQ worker bootstrap. We use RQ's SimpleWorker (no fork per job): every
engine run is bounded, and keeping one process warm keeps the per-version spec
cache and DB pool alive. Each job gets its own app context and session."""

from __future__ import annotations

from flask import Flask
from rq import Queue, SimpleWorker

from .context import set_worker_app
from .queues import ALL_QUEUES, get_redis


def run_worker(app: Flask, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False,
               with_scheduler: bool = True, name: str | None = None) -> None:
    """Work the queues until stopped (or until empty with ``burst``), with RQ's scheduler."""
    set_worker_app(app)
    with app.app_context():
        conn = get_redis()
    worker = SimpleWorker([Queue(q, connection=conn) for q in queues], connection=conn, name=name)
    worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
