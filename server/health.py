"""Liveness of every moving part: database, Redis, RQ workers, scheduler and timer poller."""

from __future__ import annotations

import time

from flask_smorest import Blueprint
from marshmallow import Schema, fields
from rq import Worker
from sqlalchemy import text

from .auth.access import public
from .extensions import db
from .jobs.poller import HEARTBEAT_KEY
from .jobs.queues import ALL_QUEUES, get_redis
from .jobs.worker import HEARTBEAT_FRESH_SECONDS

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Health")


class HealthSchema(Schema):
    status = fields.String()
    database = fields.String()
    redis = fields.String()
    workers = fields.Integer()
    scheduler = fields.String()
    timer_poller = fields.String()


def check_health() -> dict:
    """Probe each part; 'ok' or a short reason (never internal error text)."""
    report = {"database": "ok", "redis": "ok", "workers": 0, "scheduler": "down", "timer_poller": "down"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means down
        report["database"] = "down"
    finally:
        db.session.rollback()
    try:
        conn = get_redis()
        conn.ping()
        now = time.time()
        workers = Worker.all(connection=conn)
        report["workers"] = sum(1 for w in workers if w.last_heartbeat
                                and now - w.last_heartbeat.timestamp() < HEARTBEAT_FRESH_SECONDS)
        if any(conn.exists(f"rq:scheduler-lock:{q}") for q in ALL_QUEUES):
            report["scheduler"] = "ok"
        beat = conn.get(HEARTBEAT_KEY)
        if beat and now - int(beat) < 60:
            report["timer_poller"] = "ok"
    except Exception:  # noqa: BLE001
        report["redis"] = "down"
    healthy = report["database"] == "ok" and report["redis"] == "ok"
    report["status"] = "ok" if healthy and report["workers"] and report["timer_poller"] == "ok" else (
        "degraded" if healthy else "down")
    return report


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@public
def health():
    """Database, Redis, worker, scheduler and timer-poller liveness (public, for load balancers)."""
    report = check_health()
    return report, (503 if report["status"] == "down" else 200)
