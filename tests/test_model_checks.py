"""What deploy checks and how runs end: ISO 8601 timer values as the BPMN spec writes them, timer
expressions that cannot evaluate, runs that stop with nothing to wait for (loops SpiffWorkflow gives up
on), refusals in a designer's words, and the validate report over a folder."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime

import pytest
import time_machine

from server.extensions import db
from server.processes.models import ProcessVersion
from tests.conftest import TEST_BPMN, inline_model

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT = inline_model("waits", """    <bpmn:startEvent id="start"/>
    <bpmn:intermediateCatchEvent id="wait">
      <bpmn:timerEventDefinition id="wait_timer"><bpmn:KIND>VALUE</bpmn:KIND></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>""")


def _wait(kind: str, value: str) -> dict[str, str]:
    return {"waits.bpmn": WAIT.replace("KIND", kind).replace("VALUE", value)}


@pytest.mark.parametrize("kind, value, due", [
    ("timeDuration", "P7D", "2026-03-09T09:00:00"),
    ("timeDuration", "PT1H30M", "2026-03-02T10:30:00"),
    ("timeDuration", "P1Y2M", "2027-05-02T09:00:00"),
    ("timeDuration", '"PT1H"', "2026-03-02T10:00:00"),  # quoted, the Python way, still works
    ("timeDuration", "${delay}", "2026-03-02T09:15:00"),  # an expression stays one
    ("timeDuration", "=delay", "2026-03-02T09:15:00"),
    ("timeDate", "2026-12-24T09:00:00Z", "2026-12-24T09:00:00"),
    ("timeCycle", "R6/P1D", "2026-03-03T09:00:00"),
    ("timeCycle", "R/PT1H", "2026-03-02T10:00:00"),
    ("timeCycle", "R3/2026-12-24T09:00:00Z/P1D", "2026-12-24T09:00:00"),
])
def test_a_timer_value_written_as_the_bpmn_spec_writes_it_is_taken_as_a_literal(deploy, start, kind, value, due):
    deploy(files=_wait(kind, value))
    with time_machine.travel(START, tick=False):
        detail = start("waits", {"delay": "PT15M"})
    assert detail["instance"]["status"] == "running", detail["incidents"]
    [timer] = detail["timers"]
    assert timer["element_id"] == "wait" and timer["due_at"].startswith(due)


@pytest.mark.parametrize("kind, value, words", [
    ("timeDuration", "P1X", "not a duration such as PT1H30M or P7D"),
    ("timeDuration", "2026-12-24T09:00:00Z", "not a duration"),
    ("timeCycle", "R6/P1X", "not a repeating interval such as R6/P1D"),
    ("timeCycle", "PT1H", "not a repeating interval"),
    ("timeDate", "2026-13-45T09:00:00Z", "not a date-time such as 2026-12-24T09:00:00Z"),
    ("timeDuration", '"P1X"', "not a duration"),  # a quoted constant is checked too
    ("timeDuration", "42", "milliseconds"),  # Bonita's milliseconds are read, but 42 ms is PT0.042S: fine
    ("timeCycle", "0 0 9 * * ?", "cron expression"),
    ("timeDuration", "Long.valueOf(Math.abs(delay))", "cannot be translated"),
])
def test_a_timer_value_that_cannot_evaluate_is_refused_at_deploy_on_its_element(deploy, app, kind, value, words):
    if value == "42":  # not a refusal: the value is read as milliseconds, with a warning that says so
        [result] = deploy(files=_wait(kind, value))
        assert any(words in w["message"] and w["element_id"] == "wait" for w in result["warnings"])
        return
    body = deploy(files=_wait(kind, value), expect=422)
    assert body["element_id"] == "wait" and body["line"] == 6 and words in body["detail"], body
    assert "NameError" not in body["detail"] and "not defined" not in body["detail"]
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


@pytest.mark.parametrize("delay, words", [
    ("soon", "is not a duration such as PT1H30M or P7D"),
    (None, "is not a duration"),
])
def test_a_timer_expression_with_a_bad_value_at_run_time_is_an_incident_in_words(deploy, start, delay, words):
    deploy(files=_wait("timeDuration", "${delay}"))
    [incident] = start("waits", {"delay": delay})["incidents"]
    assert incident["element_id"] == "wait" and words in incident["message"], incident
    assert "${delay}" in incident["message"]  # the expression as the designer wrote it
    for internal in ("NameError", "Exception", "Traceback", "Invalid duration", "object has no attribute"):
        assert internal not in incident["message"]


def test_a_python_timer_expression_naming_an_unset_variable_is_an_incident_in_words(deploy, start):
    deploy(files=_wait("timeDuration", "reminder_delay"))
    [incident] = start("waits")["incidents"]
    assert incident["element_id"] == "wait" and "'reminder_delay' is not defined" in incident["message"]
    assert "NameError" not in incident["message"] and "name 'reminder_delay'" not in incident["message"]


# -- runs that stop with nothing to wait for ----------------------------------------------
@pytest.fixture
def production_step_limit(app):
    """The default step limit (2,000, above SpiffWorkflow's own 1,000-deep path), for this test only."""
    before = app.config["ENGINE_STEP_LIMIT"], app.config["ENGINE_TIME_LIMIT"]
    app.config["ENGINE_STEP_LIMIT"], app.config["ENGINE_TIME_LIMIT"] = 2000, 60.0
    app.extensions.pop("flowdesk_engine", None)
    yield
    app.config["ENGINE_STEP_LIMIT"], app.config["ENGINE_TIME_LIMIT"] = before
    app.extensions.pop("flowdesk_engine", None)


HEAVY = (TEST_BPMN / "looping.bpmn").read_text().replace(
    "<bpmn:script>laps = 1</bpmn:script>", "<bpmn:script>laps = sum(range(2000))</bpmn:script>").replace(
    'id="looping"', 'id="heavy_loop"')
NO_EXIT = (TEST_BPMN / "looping.bpmn").read_text().replace('id="looping"', 'id="no_exit"').replace(
    '<bpmn:sequenceFlow id="stop" sourceRef="keep_going" targetRef="done" />', "").replace(
    "<bpmn:outgoing>stop</bpmn:outgoing>", "").replace(' default="stop"', "").replace(
    "<bpmn:conditionExpression>True</bpmn:conditionExpression>", "").replace(
    '<bpmn:endEvent id="done"><bpmn:incoming>stop</bpmn:incoming></bpmn:endEvent>', "")


@pytest.mark.parametrize("files, process", [
    ({"looping.bpmn": (TEST_BPMN / "looping.bpmn").read_text()}, "looping"),
    ({"heavy.bpmn": HEAVY}, "heavy_loop"),
    ({"no_exit.bpmn": NO_EXIT}, "no_exit"),
])
def test_a_loop_spiffworkflow_gives_up_on_becomes_an_incident_where_it_stopped(deploy, start, production_step_limit,
                                                                                files, process):
    deploy(files=files)
    detail = start(process)
    assert detail["instance"]["status"] == "error", detail
    [incident] = detail["incidents"]
    assert incident["element_id"] in ("keep_going", "count_up")
    assert "loop" in incident["message"] and "Error" not in incident["message"]


DEAD_END = inline_model("dead_end", """    <bpmn:startEvent id="start"/>
    <bpmn:parallelGateway id="split"/>
    <bpmn:exclusiveGateway id="choose" default="skip"/>
    <bpmn:scriptTask id="work"><bpmn:script>done = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:parallelGateway id="join"/>
    <bpmn:endEvent id="skipped"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="split"/>
    <bpmn:sequenceFlow id="f2" sourceRef="split" targetRef="work"/>
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="choose"/>
    <bpmn:sequenceFlow id="go" sourceRef="choose" targetRef="join">
      <bpmn:conditionExpression>False</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="skip" sourceRef="choose" targetRef="skipped"/>
    <bpmn:sequenceFlow id="f4" sourceRef="work" targetRef="join"/>
    <bpmn:sequenceFlow id="f5" sourceRef="join" targetRef="end"/>""")


def test_a_run_left_waiting_for_a_path_that_never_comes_is_an_incident_on_the_join(deploy, start):
    deploy(files={"dead_end.bpmn": DEAD_END})
    detail = start("dead_end")
    assert detail["instance"]["status"] == "error"
    [incident] = detail["incidents"]
    assert incident["element_id"] == "join" and "nothing left to wait for" in incident["message"]


# -- refusals in a designer's words ---------------------------------------------------------
PLAIN = inline_model("plain", """    <bpmn:startEvent id="start"/>
    BODY""")
REFUSALS = {
    "a data output to nothing": ("""<bpmn:task id="write" name="Write">
      <bpmn:dataOutputAssociation id="out"><bpmn:targetRef>start</bpmn:targetRef></bpmn:dataOutputAssociation>
    </bpmn:task>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="write"/>""", "write", "a data output of this task"),
    "an end event with two outgoing flows": ("""<bpmn:endEvent id="stop"/><bpmn:endEvent id="a"/><bpmn:endEvent id="b"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="stop"/>
    <bpmn:sequenceFlow id="f2" sourceRef="stop" targetRef="a"/>
    <bpmn:sequenceFlow id="f3" sourceRef="stop" targetRef="b"/>""", "stop", "several outgoing flows"),
    "an attribute the schema does not know": ("""<bpmn:task id="odd" colour="red"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="odd"/>""", "odd", "the attribute 'colour'"),
    "elements in the wrong order": ("""<bpmn:task id="late">
      <bpmn:outgoing>f1</bpmn:outgoing><bpmn:incoming>f0</bpmn:incoming>
    </bpmn:task>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="late"/>""", "late", "BPMN 2.0 schema"),
    "a flow to an element that does not exist": (
        """<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="nowhere"/>""", "f1", "nowhere"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_every_refusal_names_the_element_and_says_what_in_a_designers_words(deploy, case):
    body, element_id, words = REFUSALS[case]
    answer = deploy(files={"plain.bpmn": PLAIN.replace("BODY", body)}, expect=422)
    assert answer["element_id"] == element_id and answer["line"], answer
    assert words in answer["detail"], answer
    for internal in ("0x", "<Element", "{http", "Traceback", "tasks of type"):
        assert internal not in answer["detail"], answer
    assert not re.search(r"\b\w+(Error|Exception)\b", answer["detail"]), answer


# -- the validate report ----------------------------------------------------------------------
def test_the_validate_report_counts_what_deploys_and_what_runs_to_its_end(app, tmp_path):
    shutil.copytree(TEST_BPMN / "tools", tmp_path / "tools")
    (tmp_path / "tools" / "broken.bpmn").write_text(_wait("timeDuration", "P1X")["waits.bpmn"])
    result = app.test_cli_runner().invoke(args=["validate", "--report", str(tmp_path / "tools")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "refused   broken.bpmn: the timer value 'P1X' is not a duration such as PT1H30M or P7D (ISO 8601) " \
           "[wait, line 6]" in lines
    assert any(line.startswith("deployed  signavio/claims_handling.bpmn (4 warnings): ") and "ran to its end" in line
               for line in lines)
    assert "files: 9   deployed: 8 (89 %)   refused: 1" in lines
    assert any(line.startswith("of the deployed: ran to an end ") for line in lines)
    assert any("the timer value … is not a duration" in line for line in lines)


def test_the_validate_report_in_strict_mode_refuses_what_is_not_executable(app):
    result = app.test_cli_runner().invoke(args=["validate", "--report", str(TEST_BPMN / "tools"), "--strict"])
    assert "refused   signavio/claims_handling.bpmn: no executable process" in result.output


# -- the designer's page ------------------------------------------------------------------------
def _csrf(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def test_the_upload_page_deploys_a_non_executable_model_when_asked_and_lists_the_warnings(app, make_user):
    import io

    make_user("designer", username="modeller")
    browser = app.test_client()
    browser.post("/login", data={"username": "modeller", "password": "password-123",
                                 "csrf_token": _csrf(browser.get("/login"))})
    data = (TEST_BPMN / "tools" / "signavio" / "claims_handling.bpmn").read_bytes()
    refused = browser.post("/designer", content_type="multipart/form-data", data={
        "csrf_token": _csrf(browser.get("/designer")), "action": "deploy",
        "files": (io.BytesIO(data), "claims_handling.bpmn")})
    assert refused.status_code == 422 and "make executable" in refused.get_data(as_text=True)
    page = browser.post("/designer", content_type="multipart/form-data", data={
        "csrf_token": _csrf(browser.get("/designer")), "action": "deploy", "make_executable": "1",
        "files": (io.BytesIO(data), "claims_handling.bpmn")})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="deploy-warnings"' in html
    assert "sid-A1B2C3D4-0006-4000-8000-000000000006" in html and "have no condition" in html
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 1
