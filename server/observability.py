"""Operations: structured (JSON-lines) logs carrying the request id or the RQ
job id, and Prometheus metrics at ``/metrics``.

Metrics from several gunicorn/RQ processes are merged by prometheus_client's
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (the run command
sets it under the data dir); without it each process reports its own.
Gauges that describe shared state (queue depths, pending timers, open
incidents) are read from Redis and the database at scrape time."""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import time
import uuid

from flask import Flask, Response, current_app, g, has_request_context, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from rq import get_current_job
from sqlalchemy import func, select

from .auth.access import bearer_token, current_principal, public
from .db import utcnow
from .errors import PermissionDenied
from .extensions import db
from .jobs.queues import ALL_QUEUES, get_queue
from .metrics import LATENCY, REQUESTS
from .processes.models import Incident, Timer

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request/job id, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key in ("request_id", "job_id", "method", "path", "status", "duration_ms"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ContextFilter(logging.Filter):
    """Stamp every record with the current request id or RQ job id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        else:
            job = get_current_job()
            if job is not None:
                record.job_id = job.id
        return True


def configure_logging(level: str, fmt: str) -> None:
    """JSON lines on stderr (``FLOWDESK_LOG_FORMAT=text`` for a human-readable console)."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # SpiffWorkflow logs every task state change at INFO: far too chatty (and slow) for a server.
    logging.getLogger("spiff").setLevel(logging.WARNING)


def init_request_tracking(app: Flask) -> None:
    """Give each request an id (X-Request-ID honoured when sane), count it and time it."""
    access = logging.getLogger("flowdesk.access")

    @app.before_request
    def _start():
        sent = request.headers.get("X-Request-ID", "")
        g.request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        endpoint = request.endpoint or "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        LATENCY.labels(endpoint).observe(elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if response.status_code >= 500 or access.isEnabledFor(logging.DEBUG):
            access.log(logging.WARNING if response.status_code >= 500 else logging.DEBUG, "request",
                       extra={"method": request.method, "path": request.path, "status": response.status_code,
                              "duration_ms": round(elapsed * 1000, 2)})
        return response


class _SharedState:
    """Scrape-time gauges read from Redis and the database (true for the whole deployment)."""

    def collect(self):
        depth = GaugeMetricFamily("flowdesk_queue_depth", "Jobs waiting in an RQ queue", labels=["queue"])
        for name in ALL_QUEUES:
            depth.add_metric([name], len(get_queue(name)))
        yield depth
        pending = db.session.scalar(select(func.count(Timer.id)).where(Timer.fired_at.is_(None),
                                                                       Timer.cancelled_at.is_(None)))
        overdue = db.session.scalar(select(func.count(Timer.id)).where(
            Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at < utcnow()))
        incidents = db.session.scalar(select(func.count(Incident.id)).where(Incident.resolved_at.is_(None)))
        yield GaugeMetricFamily("flowdesk_timers_pending", "Timers waiting to fire", value=pending)
        yield GaugeMetricFamily("flowdesk_timers_overdue", "Timers past their due time, not fired yet",
                                value=overdue)
        yield GaugeMetricFamily("flowdesk_incidents_open", "Instances stopped on an unresolved incident",
                                value=incidents)


def metrics_response() -> Response:
    """The Prometheus exposition: this deployment's request/timer metrics plus the shared-state gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry()
    state.register(_SharedState())
    return Response(generate_latest(registry) + generate_latest(state), mimetype=CONTENT_TYPE_LATEST)


def register_metrics_route(app: Flask) -> None:
    """``GET /metrics`` for an admin's bearer token, or the scrape token ``FLOWDESK_METRICS_TOKEN``."""
    @app.get("/metrics")
    @public  # checked below: the scrape token, else an admin
    def metrics():
        scrape_token = current_app.config.get("METRICS_TOKEN")
        sent = bearer_token() or ""
        scraper = bool(scrape_token) and hmac.compare_digest(sent, scrape_token)
        if not scraper and not current_principal().has_role("admin"):
            raise PermissionDenied("metrics are for admins and the scrape token")
        return metrics_response()
