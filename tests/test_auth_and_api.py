"""Authentication, deny-by-default access, problem+json, OpenAPI and health."""

from __future__ import annotations

import pytest

from server.auth.access import ACCESS_ATTR


def test_every_route_carries_an_access_rule(app):
    unmarked = [rule.rule for rule in app.url_map.iter_rules()
                if rule.endpoint not in ("static", "api-docs.openapi_json")
                and getattr(app.view_functions[rule.endpoint], ACCESS_ATTR, None) is None]
    assert unmarked == []


def test_api_calls_without_a_token_get_401_problem_json(client):
    response = client.get("/api/v1/processes")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["title"] == "Authentication required"


def test_a_forged_token_is_refused(client):
    response = client.get("/api/v1/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401


@pytest.mark.parametrize("role", ["sales_rep", "engineer", "finance"])
def test_roles_without_design_rights_cannot_deploy_or_see_instances(client, make_user, role):
    _, headers = make_user(role)
    assert client.get("/api/v1/processes", headers=headers).status_code == 403
    assert client.post("/api/v1/processes", json={"files": {}}, headers=headers).status_code == 403
    assert client.get("/api/v1/instances", headers=headers).status_code == 403
    assert client.get("/api/v1/tasks", headers=headers).status_code == 200


def test_tasks_of_another_role_are_invisible_and_cannot_be_completed(deploy, start, client, make_user):
    deploy("approval_escalation.bpmn")
    start("approval_escalation")
    _, manager = make_user("sales_manager")
    _, rep = make_user("sales_rep")
    [task] = client.get("/api/v1/tasks", headers=manager).get_json()
    assert client.get("/api/v1/tasks", headers=rep).get_json() == []
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=rep).status_code == 404
    refused = client.post(f"/api/v1/tasks/{task['id']}/complete",
                          json={"data": {"approved": True}, "version": task["instance_version"]}, headers=rep)
    assert refused.status_code == 403


def test_login_refresh_and_logout(client, make_user):
    make_user("designer", username="dana")
    bad = client.post("/api/v1/auth/token", json={"username": "dana", "password": "wrong-one"})
    assert bad.status_code == 401
    tokens = client.post("/api/v1/auth/token", json={"username": "dana", "password": "password-123"}).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/api/v1/me", headers=headers).get_json()["username"] == "dana"

    renewed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200
    headers = {"Authorization": f"Bearer {renewed.get_json()['access_token']}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200

    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    # refresh tokens are single-use, and a logout ends them too (replays: test_security.py)
    for spent in (tokens["refresh_token"], renewed.get_json()["refresh_token"]):
        assert client.post("/api/v1/auth/refresh", json={"refresh_token": spent}).status_code == 401


def test_a_body_that_breaks_the_request_schema_names_the_field(client, designer):
    response = client.post("/api/v1/processes/x/instances", json={"data": "nope", "version": 0}, headers=designer)
    assert response.status_code == 422
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert fields == {"data", "version"}


def test_unknown_routes_are_problem_json_404(client, designer):
    response = client.get("/api/v1/nothing-here", headers=designer)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_openapi_describes_every_json_endpoint(client):
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    for path in ["/api/v1/processes", "/api/v1/processes/validate", "/api/v1/processes/{process_key}/instances",
                 "/api/v1/instances/{instance_id}", "/api/v1/instances/{instance_id}/audit",
                 "/api/v1/tasks", "/api/v1/tasks/{task_id}/complete", "/api/v1/tasks/{task_id}/claim",
                 "/api/v1/messages", "/api/v1/health", "/api/v1/auth/token"]:
        assert path in paths, path
    assert "InstanceDetail" in spec["components"]["schemas"]


def test_health_reports_database_and_redis(client):
    body = client.get("/api/v1/health").get_json()
    assert body["database"] == "ok" and body["redis"] == "ok"
    assert body["status"] in ("ok", "degraded")


def test_security_headers_are_set(client):
    response = client.get("/api/v1/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_an_upload_over_the_size_limit_gets_413(client, designer, app):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)
    response = client.post("/api/v1/processes", data=big, headers={**designer, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_health_still_sees_a_live_worker_after_redis_lost_its_data_and_while_it_idles(app, client, redis_conn):
    # Found by bench/fault_injection.py: after Redis restarted empty the workers kept firing timers but
    # health reported "workers: 0" until they were restarted; an idle worker also beat too rarely for it.
    from rq import Queue

    from server.jobs.queues import ALL_QUEUES
    from server.jobs.worker import HEARTBEAT_FRESH_SECONDS, FlowdeskWorker

    worker = FlowdeskWorker([Queue(q, connection=redis_conn) for q in ALL_QUEUES], connection=redis_conn)
    assert worker.dequeue_timeout < HEARTBEAT_FRESH_SECONDS  # an idle worker beats (once per dequeue) in time
    assert worker.maintenance_interval <= 60  # and restarts a scheduler that Redis' outage killed within a minute
    worker.register_birth()
    assert client.get("/api/v1/health").get_json()["workers"] == 1
    redis_conn.flushall()
    assert client.get("/api/v1/health").get_json()["workers"] == 0
    worker.heartbeat()  # its next beat
    assert client.get("/api/v1/health").get_json()["workers"] == 1
