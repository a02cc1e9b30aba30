"""Operations: request ids in headers and JSON logs, Prometheus metrics for admins and the scrape token."""

from __future__ import annotations

import json
import logging

from server.observability import ContextFilter, JsonFormatter


def test_request_ids_are_returned_and_honoured(client):
    mine = client.get("/api/v1/health", headers={"X-Request-ID": "req-abc.123"})
    assert mine.headers["X-Request-ID"] == "req-abc.123"
    made_up = client.get("/api/v1/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made_up.headers["X-Request-ID"]) == 32 and " " not in made_up.headers["X-Request-ID"]


def test_log_lines_are_json_with_the_request_id(app):
    record = logging.LogRecord("flowdesk.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    with app.test_request_context("/x"):
        from flask import g

        g.request_id = "r-1"
        ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world" and line["request_id"] == "r-1" and line["level"] == "INFO"


def test_metrics_for_admins_and_the_scrape_token_only(app, client, make_user):
    _, admin = make_user("admin")
    _, rep = make_user("sales_rep")
    client.get("/api/v1/health")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=rep).status_code == 403
    body = client.get("/metrics", headers=admin).get_data(as_text=True)
    assert 'flowdesk_http_requests_total{endpoint="health.health",method="GET",status="200"}' in body
    assert "flowdesk_queue_depth" in body and "flowdesk_timers_pending 0.0" in body
    app.config["METRICS_TOKEN"] = "scrape-secret-token"
    try:
        scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-token"})
        assert scraped.status_code == 200 and "flowdesk_incidents_open" in scraped.get_data(as_text=True)
    finally:
        app.config["METRICS_TOKEN"] = None
