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


def test_admins_watch_queues_workers_and_failed_jobs_and_requeue_them(app, make_user, run_worker):
    from server.jobs.queues import DEFAULT, get_queue

    make_user("admin", username="root1")
    make_user("dispatcher", username="desk1")
    with app.app_context():
        failing = get_queue(DEFAULT).enqueue("builtins.int", "not a number")
    run_worker()
    browser = app.test_client()
    page = browser.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    browser.post("/login", data={"username": "root1", "password": "password-123", "csrf_token": csrf})
    queues = browser.get("/admin/queues").get_data(as_text=True)
    assert failing.id in queues and "invalid literal for int()" in queues
    requeued = browser.post(f"/admin/queues/{DEFAULT}/failed/{failing.id}",
                            data={"action": "requeue", "csrf_token": csrf})
    assert requeued.status_code == 302
    with app.app_context():
        assert get_queue(DEFAULT).failed_job_registry.count == 0 and get_queue(DEFAULT).count == 1
    assert browser.post(f"/admin/queues/{DEFAULT}/failed/nope", data={"action": "delete",
                                                                      "csrf_token": csrf}).status_code == 404
    other = app.test_client()
    page = other.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    other.post("/login", data={"username": "desk1", "password": "password-123", "csrf_token": csrf})
    assert other.get("/admin/queues").status_code == 403


def test_the_queue_page_shows_workers_with_state_and_job_and_only_admins_reach_it(app, make_user, redis_conn):
    from rq import Queue, Worker

    from server.jobs.queues import DEFAULT, get_queue

    make_user("admin", username="root2")
    make_user("engineer", username="field2")
    with app.app_context():
        job = get_queue(DEFAULT).enqueue("builtins.len", [1, 2])
    worker = Worker([Queue(DEFAULT, connection=redis_conn)], connection=redis_conn, name="w-busy")
    worker.register_birth()
    worker.set_state("busy")
    worker.prepare_execution(job)  # what a worker records as it starts the job

    anonymous = app.test_client()
    assert anonymous.get("/admin/rq").status_code == 401  # an API-style caller
    to_login = anonymous.get("/admin/rq", headers={"Accept": "text/html"})
    assert to_login.status_code == 302 and "/login?next=/admin/rq" in to_login.headers["Location"]
    admin, engineer = app.test_client(), app.test_client()
    for browser, name in ((admin, "root2"), (engineer, "field2")):
        csrf = browser.get("/login").get_data(as_text=True).split('name="csrf_token" value="', 1)[1].split('"')[0]
        browser.post("/login", data={"username": name, "password": "password-123", "csrf_token": csrf})
    assert engineer.get("/admin/rq").status_code == 403
    page = admin.get("/admin/rq")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "w-busy" in text and "busy" in text and job.id in text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    worker.register_death()


def test_admins_delete_a_failed_job(app, make_user, run_worker):
    from server.jobs.queues import DEFAULT, get_queue

    make_user("admin", username="root3")
    with app.app_context():
        failing = get_queue(DEFAULT).enqueue("builtins.int", "nope")
    run_worker()
    browser = app.test_client()
    csrf = browser.get("/login").get_data(as_text=True).split('name="csrf_token" value="', 1)[1].split('"')[0]
    browser.post("/login", data={"username": "root3", "password": "password-123", "csrf_token": csrf})
    assert browser.post(f"/admin/queues/{DEFAULT}/failed/{failing.id}", data={"action": "delete"}).status_code == 422
    deleted = browser.post(f"/admin/queues/{DEFAULT}/failed/{failing.id}", data={"action": "delete",
                                                                                   "csrf_token": csrf})
    assert deleted.status_code == 302
    with app.app_context():
        assert get_queue(DEFAULT).failed_job_registry.count == 0 and get_queue(DEFAULT).count == 0
    assert failing.id not in browser.get("/admin/rq").get_data(as_text=True)
