"""Redis connection and RQ queues, named by purpose."""

from __future__ import annotations

import redis
from flask import current_app
from rq import Queue

TIMERS = "timers"
DEFAULT = "default"
ALL_QUEUES = (TIMERS, DEFAULT)


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
