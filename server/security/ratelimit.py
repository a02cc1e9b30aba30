"""Rate limits on the public endpoints and on logins, by Flask-Limiter counting in the app's Redis
(fixed one-minute windows shared by every web process; budgets from config, ``FLOWDESK_RATE_<NAME>``).

``public_limit("RATE_QR_REPORT")`` limits the posts per minute per client address to a public endpoint;
``login_limited`` goes on every login endpoint: after too many failed logins in a minute from one
address, or for one username from anywhere, every attempt gets 429 until the window ends. Above a budget
the answer is 429 with ``Retry-After`` (when the window ends).

When Redis does not answer (a restart, a failover) the limits fail open (``RATELIMIT_SWALLOW_ERRORS``):
they only curb abuse, and refusing every login, fault report or rating meanwhile is the greater harm."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, request
from flask_limiter import RequestLimit

from ..errors import TooManyRequests, app_error_response
from ..extensions import limiter


def init_rate_limits(app: Flask) -> None:
    """Bind the limiter to ``app``'s Redis (in memory for commands run without one: they serve nothing)."""
    url = app.config.get("REDIS_URL")
    # Flask-Limiter names a unix socket (the embedded redis-server) redis+unix://.
    storage = ("redis+" + url if url.startswith("unix://") else url) if url else "memory://"
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage)
    app.config.setdefault("RATELIMIT_ON_BREACH_CALLBACK", _refuse)
    limiter.init_app(app)


def _per_minute(config_key: str) -> Callable[[], str]:
    return lambda: f"{current_app.config[config_key]}/minute"


def too_many_requests(breached: RequestLimit) -> TooManyRequests:
    """The 429 problem for a breached limit, saying when its window ends."""
    wait = max(1, math.ceil(breached.window.reset_time - time.time()))
    return TooManyRequests(f"too many requests; try again in {wait} seconds", retry_after=wait)


def _refuse(breached: RequestLimit) -> Response:
    return current_app.make_response(app_error_response(too_many_requests(breached)))


def public_limit(config_key: str, on_breach: Callable[[RequestLimit], Response] | None = None):
    """Decorator: at most ``config[config_key]`` posts a minute per client address (then 429)."""
    return limiter.limit(_per_minute(config_key), methods=["POST"], on_breach=on_breach)


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _login_username() -> str:
    body = request.get_json(silent=True) if request.is_json else request.form
    name = body.get("username") if hasattr(body, "get") else None
    return f"user:{str(name or '').strip().lower()[:80]}"


# Only failures count (deduct_when): a successful login spends nothing. Shared: one budget for the web
# login page, the API's and the mobile API's token endpoints.
_failures_by_address = limiter.shared_limit(_per_minute("RATE_LOGIN_FAILURES"), "login-failures",
                                            methods=["POST"], deduct_when=_failed)
_failures_by_username = limiter.shared_limit(_per_minute("RATE_LOGIN_FAILURES_USER"), "login-failures-user",
                                             key_func=_login_username, methods=["POST"], deduct_when=_failed)


def login_limited(view):
    """Decorator for every login endpoint: the failed-login budgets per address and per username."""
    return _failures_by_address(_failures_by_username(view))
