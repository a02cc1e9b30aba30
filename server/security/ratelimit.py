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


def limit(name: str, per_minute: int, key: str | None = None) -> None:
    """Count this request against ``name``'s per-minute budget for the client; 429 when spent."""
    budget = int(os.environ.get(f"FLOWDESK_RATE_{name.upper().replace('-', '_')}", per_minute))
    window = int(time.time() // 60)
    counter = f"flowdesk:rate:{name}:{key or request.remote_addr or 'unknown'}:{window}"
    try:
        pipe = get_redis().pipeline()
        pipe.incr(counter)
        pipe.expire(counter, 120)
        count, _ = pipe.execute()
    except redis.RedisError as err:
        log.warning("rate limit '%s' not applied: Redis unavailable (%s)", name, err)
        return
    if count > budget:
        raise TooManyRequests(f"too many requests; try again in {60 - int(time.time()) % 60} seconds",
                              retry_after=60 - int(time.time()) % 60)
