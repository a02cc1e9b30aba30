"""Designer endpoints beyond deploy: validate, multipart upload, versions, XML; claim and assign; the CLI."""

from __future__ import annotations

import io
from pathlib import Path

from server.extensions import db
from server.processes.models import ProcessVersion

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "workflows" / "reference_cycle.bpmn"


def test_validate_checks_without_deploying(client, designer, app):
    response = client.post("/api/v1/processes/validate", json={"files": {"r.bpmn": REFERENCE.read_text()}},
                           headers=designer)
    assert response.status_code == 200
    body = response.get_json()
    assert body["valid"] and body["processes"][0]["process_id"] == "reference_cycle"
    assert body["processes"][0]["form_keys"] == {"review_total": "reference_review"}
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


def test_a_user_task_naming_a_missing_form_is_refused_with_its_element(client, designer):
    xml = REFERENCE.read_text().replace('value="reference_review"', 'value="no_such_form"')
    response = client.post("/api/v1/processes/validate", json={"files": {"r.bpmn": xml}}, headers=designer)
    assert response.status_code == 422
    assert response.get_json()["element_id"] == "review_total"


def test_multipart_upload_deploys_and_versions_and_xml_are_listed(client, designer):
    data = {"files": (io.BytesIO(REFERENCE.read_bytes()), "reference_cycle.bpmn")}
    response = client.post("/api/v1/processes", data=data, headers=designer, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    listing = client.get("/api/v1/processes", headers=designer).get_json()
    assert listing[0]["process_key"] == "reference_cycle" and listing[0]["latest_version"] == 1
    versions = client.get("/api/v1/processes/reference_cycle/versions", headers=designer).get_json()
    assert versions[0]["version"] == 1 and versions[0]["file_name"] == "reference_cycle.bpmn"
    xml = client.get("/api/v1/processes/reference_cycle/versions/1/xml", headers=designer)
    assert xml.status_code == 200 and xml.mimetype == "application/xml"
    assert b'id="reference_cycle"' in xml.data
    assert client.get("/api/v1/processes/nope/versions", headers=designer).status_code == 404


def test_a_file_name_with_a_folder_is_refused(client, designer):
    response = client.post("/api/v1/processes", json={"files": {"../x.bpmn": REFERENCE.read_text()}},
                           headers=designer)
    assert response.status_code == 422


def test_claim_then_only_the_claimer_sees_and_completes_and_a_manager_can_reassign(deploy, start, client,
                                                                                     make_user):
    deploy("approval_escalation.bpmn")
    start("approval_escalation")
    first_id, first = make_user("sales_manager")
    second_id, second = make_user("sales_manager")
    _, director = make_user("director")
    [task] = client.get("/api/v1/tasks", headers=first).get_json()
    claimed = client.post(f"/api/v1/tasks/{task['id']}/claim", headers=first).get_json()
    assert claimed["assignee_id"] == first_id
    assert client.get("/api/v1/tasks", headers=second).get_json() == []
    refused = client.post(f"/api/v1/tasks/{task['id']}/complete",
                          json={"data": {"approved": True}, "version": task["instance_version"]}, headers=second)
    assert refused.status_code == 403

    _, rep = make_user("sales_rep")
    wrong_role = client.post(f"/api/v1/tasks/{task['id']}/assign", json={"assignee_id": first_id}, headers=rep)
    assert wrong_role.status_code == 403
    moved = client.post(f"/api/v1/tasks/{task['id']}/assign", json={"assignee_id": second_id}, headers=director)
    assert moved.status_code == 200 and moved.get_json()["assignee_id"] == second_id
    [mine] = client.get("/api/v1/tasks", headers=second).get_json()
    assert mine["id"] == task["id"]


def test_cli_validates_deploys_seeds_and_creates_users(app, tmp_path):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["validate", str(REFERENCE)])
    assert result.exit_code == 0 and "ok reference_cycle.bpmn" in result.output
    result = runner.invoke(args=["deploy"])
    assert result.exit_code == 0 and "reference_cycle: v1 (new)" in result.output
    assert "(unchanged)" in runner.invoke(args=["deploy"]).output
    bad = tmp_path / "bad.bpmn"
    bad.write_text("<definitions>")
    result = runner.invoke(args=["validate", str(bad)])
    assert result.exit_code != 0 and '"file": "bad.bpmn"' in result.output
    assert runner.invoke(args=["seed"]).exit_code == 0
    assert runner.invoke(args=["seed"]).exit_code == 0  # idempotent
    result = runner.invoke(args=["create-user", "zoe", "--role", "dispatcher", "--password", "long-enough-1"])
    assert result.exit_code == 0 and "created zoe (dispatcher)" in result.output
