"""Redis connection and RQ queues, named by purpose, and the one way services
queue background work: :func:`enqueue_after_commit`, naming the job by its
dotted path. Services never import job modules (jobs import services), so the
dependency points one way."""

from __future__ import annotations

import logging

import redis
from flask import current_app
from rq import Queue

from ..db import after_commit

TIMERS = "timers"
DEFAULT = "default"
ALL_QUEUES = (TIMERS, DEFAULT)

log = logging.getLogger(__name__)


def get_redis() -> redis.Redis:
    """The app's Redis connection (one client per process, created on first use)."""
    conn = current_app.extensions.get("flowdesk_redis")
    if conn is None:
        url = current_app.config.get("REDIS_URL")
        if not url:
            raise RuntimeError("REDIS_URL is not configured (the run command starts an embedded Redis)")
        conn = redis.Redis.from_url(url, health_check_interval=30)
        current_app.extensions["flowdesk_redis"] = conn
    return conn


def get_queue(name: str = DEFAULT) -> Queue:
    """An RQ queue on the app's Redis."""
    return Queue(name, connection=get_redis(), default_timeout=120)


def enqueue_after_commit(job: str, *args, queue: str = DEFAULT, at_front: bool = False) -> None:
    """Queue ``job`` (a dotted path such as ``server.aftersales.jobs.redispatch_job``) with ``args``
    once the current transaction commits, so the job never sees rows that are not there yet.

    Best effort: the change itself is already saved when Redis does not answer, and every job queued
    this way is a retry that the next event (or a timer row) triggers again; the loss is logged."""

    def enqueue() -> None:
        try:
            get_queue(queue).enqueue(job, *args, at_front=at_front)
        except redis.RedisError as err:
            log.warning("%s not queued: Redis unavailable (%s)", job, err)

    after_commit(enqueue)
