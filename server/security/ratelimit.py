"""A fixed-window rate limit in Redis, shared by every web process.

``limit("lead-form", per_minute=10)`` counts requests per client address in
the current minute with INCR + EXPIRE and raises TooManyRequests (429 with
Retry-After) above the limit. Limits come from config so operators can tune
them (``FLOWDESK_RATE_<NAME>`` per minute).

When Redis does not answer (a restart, a failover) the limit fails open: it only curbs abuse of the
public pages, and refusing every customer's fault report or rating meanwhile is the greater harm."""

from __future__ import annotations

import logging
import os
import time

import redis
from flask import request

from ..errors import TooManyRequests
from ..jobs.queues import get_redis

log = logging.getLogger(__name__)


def _budget(name: str, per_minute: int) -> int:
    return int(os.environ.get(f"FLOWDESK_RATE_{name.upper().replace('-', '_')}", per_minute))


def _counter(name: str, key: str | None) -> str:
    return f"flowdesk:rate:{name}:{key or request.remote_addr or 'unknown'}:{int(time.time() // 60)}"


def _refuse() -> None:
    wait = 60 - int(time.time()) % 60
    raise TooManyRequests(f"too many requests; try again in {wait} seconds", retry_after=wait)


def count(name: str, key: str | None = None) -> int:
    """Add one to ``name``'s counter for the client (or ``key``) in this minute; returns the new count
    (0 when Redis is unavailable: limits fail open, a Redis outage must not take logins or pages down)."""
    try:
        pipe = get_redis().pipeline()
        pipe.incr(_counter(name, key))
        pipe.expire(_counter(name, key), 120)
        total, _ = pipe.execute()
    except redis.RedisError as err:
        log.warning("rate limit '%s' not counted: Redis unavailable (%s)", name, err)
        return 0
    return total


def limit(name: str, per_minute: int, key: str | None = None) -> None:
    """Count this request against ``name``'s per-minute budget for the client; 429 when spent."""
    if count(name, key) > _budget(name, per_minute):
        _refuse()


def require_budget(name: str, per_minute: int, key: str | None = None) -> None:
    """429 if ``name``'s counter (e.g. failed logins, added with ``count``) has spent its budget."""
    try:
        spent = get_redis().get(_counter(name, key))
    except redis.RedisError as err:  # fail open, as ``limit`` does
        log.warning("rate limit '%s' not checked: Redis unavailable (%s)", name, err)
        return
    if spent is not None and int(spent) >= _budget(name, per_minute):
        _refuse()
