"""Deploying, starting and completing processes through the HTTP API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from server.extensions import db
from server.processes.models import AuditEvent, ProcessInstance, ProcessVersion

ROOT = Path(__file__).resolve().parent.parent
TEST_BPMN = Path(__file__).resolve().parent / "bpmn"


def _inbox(client, headers):
    response = client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 200
    return response.get_json()


def test_deploying_unchanged_content_makes_no_new_version(deploy):
    first = deploy("reference_cycle.bpmn")
    again = deploy("reference_cycle.bpmn")
    assert first == [{"process_key": "reference_cycle", "version": 1, "created": True, "id": first[0]["id"],
                      "warnings": []}]
    assert again[0]["created"] is False and again[0]["version"] == 1


def test_reference_cycle_runs_start_to_end(deploy, start, client, designer):
    deploy("reference_cycle.bpmn")
    detail = start("reference_cycle")
    instance = detail["instance"]
    assert instance["status"] == "running"
    assert instance["active_element_ids"] == ["review_total"]
    assert detail["data"]["total"] == 42
    [task] = _inbox(client, designer)
    assert task["element_id"] == "review_total" and task["form_key"] == "reference_review"

    response = client.post(f"/api/v1/tasks/{task['id']}/complete",
                           json={"data": {"approved": True}, "version": task["instance_version"]}, headers=designer)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["instance"]["status"] == "completed"
    assert _inbox(client, designer) == []


def test_form_data_that_breaks_its_schema_is_refused_with_each_field(deploy, start, client, designer):
    deploy("reference_cycle.bpmn")
    start("reference_cycle")
    [task] = _inbox(client, designer)
    response = client.post(f"/api/v1/tasks/{task['id']}/complete",
                           json={"data": {"comment": 5, "extra": 1}, "version": task["instance_version"]},
                           headers=designer)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert {"approved", "comment"} <= fields
    # Nothing changed: the task is still open on the same version.
    [still] = _inbox(client, designer)
    assert still["instance_version"] == task["instance_version"]


def test_a_stale_version_gets_409(deploy, start, client, designer):
    deploy("reference_cycle.bpmn")
    start("reference_cycle")
    [task] = _inbox(client, designer)
    response = client.post(f"/api/v1/tasks/{task['id']}/complete",
                           json={"data": {"approved": True}, "version": task["instance_version"] - 1},
                           headers=designer)
    assert response.status_code == 409
    assert response.get_json()["current_version"] == task["instance_version"]


def test_running_instances_finish_on_the_version_they_started_with(deploy, start, client, designer, app):
    deploy("reference_cycle.bpmn")
    old = start("reference_cycle")
    changed = (ROOT / "workflows" / "reference_cycle.bpmn").read_text().replace(
        'name="Review total"', 'name="Review the total"').replace("total = sum(items) * 7", "total = sum(items) * 8")
    result = deploy(files={"reference_cycle.bpmn": changed})
    assert result[0]["version"] == 2 and result[0]["created"]
    new = start("reference_cycle")
    assert new["instance"]["process_version"] == 2 and new["data"]["total"] == 48
    assert old["instance"]["process_version"] == 1 and old["data"]["total"] == 42

    old_task = next(t for t in _inbox(client, designer) if t["instance_id"] == old["instance"]["id"])
    assert old_task["name"] == "Review total"
    response = client.post(f"/api/v1/tasks/{old_task['id']}/complete",
                           json={"data": {"approved": False}, "version": old_task["instance_version"]},
                           headers=designer)
    assert response.get_json()["instance"]["status"] == "completed"
    assert response.get_json()["instance"]["process_version"] == 1


def test_malformed_bpmn_is_refused_with_file_and_line_and_nothing_is_written(deploy, app):
    body = deploy(files={"broken.bpmn": "<bpmn:definitions xmlns:bpmn='x'>\n<unclosed>\n</bpmn:definitions>"},
                  expect=422)
    assert body["file"] == "broken.bpmn" and body["line"] == 3
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


def test_an_xxe_file_is_refused(deploy):
    body = deploy("xxe.bpmn", expect=422)
    assert body["file"] == "xxe.bpmn" and "DOCTYPE" in body["detail"]


def test_a_script_calling_import_is_refused_at_deploy_with_its_element(deploy, app):
    body = deploy("escape_attempt.bpmn", expect=422)
    assert body["element_id"] == "divide" and body["line"] == 7
    assert "__import__" in body["detail"]
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


def test_a_bundle_is_all_or_nothing(deploy, app):
    deploy("reference_cycle.bpmn", "escape_attempt.bpmn", expect=422)
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


def test_a_failing_script_becomes_an_incident_and_can_be_retried_with_a_data_fix(deploy, start, client, designer):
    deploy("failing_script.bpmn")
    detail = start("failing_script", {"divisor": 0})
    assert detail["instance"]["status"] == "error"
    [incident] = detail["incidents"]
    assert incident["element_id"] == "divide" and "division by zero" in incident["message"]
    assert incident["line"] == 1

    instance_id = detail["instance"]["id"]
    response = client.post(f"/api/v1/instances/{instance_id}/retry",
                           json={"data": {"divisor": 4}, "version": detail["instance"]["version"]}, headers=designer)
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["instance"]["status"] == "running"
    assert after["data"]["share"] == 25
    assert after["incidents"][0]["resolved_at"] is not None


def test_an_incident_can_be_retried_on_a_fixed_redeployed_version(deploy, start, client, designer):
    deploy("failing_script.bpmn")
    detail = start("failing_script", {"divisor": 0})
    fixed = (Path(__file__).parent / "bpmn" / "failing_script.bpmn").read_text().replace(
        "share = 100 / divisor", "share = 100 / divisor if divisor else 0")
    assert deploy(files={"failing_script.bpmn": fixed})[0]["version"] == 2
    response = client.post(f"/api/v1/instances/{detail['instance']['id']}/retry",
                           json={"to_latest": True, "version": detail["instance"]["version"]}, headers=designer)
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    assert after["instance"]["status"] == "running", [i["message"] for i in after["incidents"]]
    assert after["instance"]["process_version"] == 2
    assert after["data"]["share"] == 0


def test_a_retry_onto_a_version_missing_reached_elements_is_refused(deploy, start, client, designer):
    deploy("failing_script.bpmn")
    detail = start("failing_script", {"divisor": 0})
    renamed = (Path(__file__).parent / "bpmn" / "failing_script.bpmn").read_text().replace('"divide"', '"split"')
    deploy(files={"failing_script.bpmn": renamed})
    response = client.post(f"/api/v1/instances/{detail['instance']['id']}/retry", json={"to_latest": True},
                           headers=designer)
    assert response.status_code == 409 and "divide" in response.get_json()["detail"]
    again = client.get(f"/api/v1/instances/{detail['instance']['id']}", headers=designer).get_json()
    assert again["instance"]["status"] == "error" and again["instance"]["process_version"] == 1


def test_other_instances_are_unaffected_by_an_incident(deploy, start):
    deploy("failing_script.bpmn")
    assert start("failing_script", {"divisor": 0})["instance"]["status"] == "error"
    assert start("failing_script", {"divisor": 5})["instance"]["status"] == "running"


def test_a_looping_model_becomes_an_incident_not_a_hang(deploy, start):
    deploy("looping.bpmn")
    detail = start("looping")
    assert detail["instance"]["status"] == "error"
    assert "steps" in detail["incidents"][0]["message"]


def test_a_busy_script_is_stopped_by_its_time_limit(deploy, start):
    deploy("slow_script.bpmn")
    detail = start("slow_script")
    assert detail["instance"]["status"] == "error"
    assert "time limit" in detail["incidents"][0]["message"]


@pytest.mark.parametrize("stubborn", [
    "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass",
    "try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass",
    "def spin():\n    while True:\n        yield 1\nfor x in spin():\n    pass",
])
def test_a_script_that_tries_to_outlast_its_time_limit_is_stopped_all_the_same(deploy, start, stubborn):
    xml = (TEST_BPMN / "slow_script.bpmn").read_text().replace("while True:\n    pass", stubborn)
    deploy(files={"slow_script.bpmn": xml})
    detail = start("slow_script")
    assert detail["instance"]["status"] == "error"
    assert detail["incidents"][0]["message"] == "script ran longer than its time limit"


def test_the_time_limit_leaves_the_tracer_of_coverage_and_debuggers_in_place(deploy, start):
    # The limit once took sys.settrace for itself: coverage saw nothing a script ran, a debugger lost its place.
    seen: set[str] = set()

    def debugger(frame, event, arg):
        seen.add(frame.f_code.co_filename)

    deploy("slow_script.bpmn")
    previous = sys.gettrace()
    sys.settrace(debugger)
    try:
        detail = start("slow_script")
        still = sys.gettrace()
    finally:
        sys.settrace(previous)
    assert detail["instance"]["status"] == "error" and "time limit" in detail["incidents"][0]["message"]
    assert still is debugger and "<bpmn-script>" in seen  # it saw the script's own frames, and kept its place


def test_a_message_is_correlated_by_name_and_business_key(deploy, start, client, designer):
    deploy("payment_wait.bpmn")
    first = start("payment_wait", business_key="order-1")
    second = start("payment_wait", business_key="order-2")
    assert first["messages"][0]["message_name"] == "payment_received"

    response = client.post("/api/v1/messages", json={"name": "payment_received", "correlation_key": "order-2",
                                                     "payload": {"amount": 10}}, headers=designer)
    assert response.status_code == 200
    assert response.get_json() == {"delivered_to": [second["instance"]["id"]]}
    done = client.get(f"/api/v1/instances/{second['instance']['id']}", headers=designer).get_json()
    assert done["instance"]["status"] == "completed" and done["data"]["paid"] is True
    waiting = client.get(f"/api/v1/instances/{first['instance']['id']}", headers=designer).get_json()
    assert waiting["instance"]["status"] == "running"

    missing = client.post("/api/v1/messages", json={"name": "payment_received", "correlation_key": "order-9"},
                          headers=designer)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_suspend_resume_and_terminate(deploy, start, client, designer, app):
    deploy("reference_cycle.bpmn")
    detail = start("reference_cycle")
    iid = detail["instance"]["id"]
    suspended = client.post(f"/api/v1/instances/{iid}/suspend", json={}, headers=designer).get_json()
    assert suspended["instance"]["status"] == "suspended"
    [task] = _inbox(client, designer)
    refused = client.post(f"/api/v1/tasks/{task['id']}/complete",
                          json={"data": {"approved": True}, "version": suspended["instance"]["version"]},
                          headers=designer)
    assert refused.status_code == 409
    resumed = client.post(f"/api/v1/instances/{iid}/resume", json={}, headers=designer).get_json()
    assert resumed["instance"]["status"] == "running"
    ended = client.post(f"/api/v1/instances/{iid}/terminate", json={"reason": "customer withdrew"},
                        headers=designer).get_json()
    assert ended["instance"]["status"] == "terminated" and ended["tasks"] == []
    audit = client.get(f"/api/v1/instances/{iid}/audit", headers=designer).get_json()
    assert [e["event"] for e in audit] == ["started", "suspended", "resumed", "terminated"]
    with app.app_context():
        assert db.session.get(ProcessInstance, iid).status == "terminated"


def test_the_audit_trail_records_who_completed_what_with_which_data(deploy, start, client, designer, app):
    deploy("reference_cycle.bpmn")
    start("reference_cycle")
    [task] = _inbox(client, designer)
    client.post(f"/api/v1/tasks/{task['id']}/complete",
                json={"data": {"approved": True, "comment": "fine"}, "version": task["instance_version"]},
                headers={**designer, "X-Client": "approver-phone"})
    with app.app_context():
        event = db.session.query(AuditEvent).filter_by(event="task_completed").one()
        assert event.actor_id is not None and event.element_id == "review_total"
        assert event.data["data"] == {"approved": True, "comment": "fine"}
        assert event.client.startswith("approver-phone")


def _deploy_with_script(deploy, script: str) -> None:
    """Deploy failing_script.bpmn with its script task's code replaced."""
    xml = (Path(__file__).parent / "bpmn" / "failing_script.bpmn").read_text().replace("share = 100 / divisor", script)
    deploy(files={"failing_script.bpmn": xml})


def test_scripts_can_call_registered_service_functions(deploy, start):
    _deploy_with_script(deploy, "stamped = now_iso()")
    detail = start("failing_script")
    assert detail["instance"]["status"] == "running"
    assert detail["data"]["stamped"].startswith("20")


def test_scripts_cannot_open_files(deploy):
    # Refused at deploy, on its element (test_security.py covers the indirect names at run time).
    xml = (Path(__file__).parent / "bpmn" / "failing_script.bpmn").read_text().replace(
        "share = 100 / divisor", "handle = open('/etc/passwd')")
    refused = deploy(files={"failing_script.bpmn": xml}, expect=422)
    assert "'open' is not allowed" in refused["detail"] and refused["errors"][0]["element_id"] == "divide"


def test_the_audit_trail_starts_with_started_even_when_the_instance_ends_at_once(deploy, start, client, designer):
    deploy("failing_script.bpmn")
    detail = start("failing_script", {"divisor": 0})
    audit = client.get(f"/api/v1/instances/{detail['instance']['id']}/audit", headers=designer).get_json()
    assert [e["event"] for e in audit] == ["started", "error"]
