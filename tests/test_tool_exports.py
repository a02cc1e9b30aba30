"""Models as modelling tools export them (tests/bpmn/tools/<tool>/, written by hand after each tool's
export format): Camunda Modeler 7 (camunda: attributes, JUEL), Camunda 8 / Zeebe (zeebe: extensions,
FEEL), Signavio (isExecutable="false", sid- ids, signavio: metadata), Bonita (model: prefix, Groovy-style
conditions, millisecond timers, ids with spaces), Activiti Designer (activiti: attributes, JUEL in CDATA)
and the Eclipse BPMN2 Modeler (bpmn2: prefix, implicit splits, ids with spaces). Each deploys and is
driven to its end through the API: user tasks completed, timers fired by moving the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from tests.conftest import inline_model

TOOLS = Path(__file__).parent / "bpmn" / "tools"
START = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)  # the Eclipse model waits until 2026-12-24

# (files, process, start data, data each user task submits, make executable)
RUNS = {
    "camunda7 invoice under 10,000": (["camunda7/invoice_approval.bpmn"], "invoice_approval",
                                      {"amount": 500, "approver": "demo"}, {"Activity_approve": {"approved": True}},
                                      False),
    "camunda7 invoice over 10,000": (["camunda7/invoice_approval.bpmn"], "invoice_approval",
                                     {"amount": 25000, "approver": "demo"}, {"Activity_approve": {"approved": True}},
                                     False),
    "camunda7 invoice rejected": (["camunda7/invoice_approval.bpmn"], "invoice_approval",
                                  {"amount": 500, "approver": "demo"}, {"Activity_approve": {"approved": False}},
                                  False),
    "camunda7 long leave": (["camunda7/leave_request.bpmn"], "leave_request", {"days": 12, "reminderDelay": "PT2H"},
                            {"Activity_manager": {"approved": True}}, False),
    "camunda7 short leave": (["camunda7/leave_request.bpmn"], "leave_request", {"days": 2, "reminderDelay": "P1D"},
                             {}, False),
    "zeebe large order": (["zeebe/order_fulfilment.bpmn", "zeebe/payment_child.bpmn"], "order_fulfilment",
                          {"quantity": 3, "price": 500, "region": "EU", "status": "new"}, {}, False),
    "zeebe small order": (["zeebe/order_fulfilment.bpmn", "zeebe/payment_child.bpmn"], "order_fulfilment",
                          {"quantity": 1, "price": 20, "region": "US", "status": "new"}, {}, False),
    "signavio claim": (["signavio/claims_handling.bpmn"], "sid-0D9C8B7A-6F5E-4D3C-2B1A-0F9E8D7C6B5A", {}, {}, True),
    "bonita loan": (["bonita/loan_request.bpmn"], "_Q2l7cnH_Eei9Z4IY4QeFuA",
                    {"loan": {"status": "Accepted By Councellor", "amount": 5000}}, {}, False),
    "bonita loan refused": (["bonita/loan_request.bpmn"], "_Q2l7cnH_Eei9Z4IY4QeFuA",
                            {"loan": {"status": "Refused", "amount": 5000}}, {}, False),
    "activiti holiday": (["activiti/holiday_request.bpmn"], "holidayRequest", {"days": 3},
                         {"approveTask": {"approved": True}}, False),
    "eclipse large order": (["eclipse/purchase_order.bpmn"], "purchase_order", {"amount": 5000, "urgent": False},
                            {}, True),
    "eclipse small order": (["eclipse/purchase_order.bpmn"], "purchase_order", {"amount": 50, "urgent": False},
                            {}, True),
}


def _files(*names: str) -> dict[str, str]:
    return {Path(name).name: (TOOLS / name).read_text(encoding="utf-8") for name in names}


@pytest.fixture
def drive(client, make_user, poll_timers, run_worker):
    """Factory: start an instance under a frozen clock and run it to its end — complete its user tasks,
    fire its timers by moving the clock (a fresh login after each move: tokens expire as time passes)."""

    def run(process: str, data: dict, task_data: dict) -> dict:
        with time_machine.travel(START, tick=False) as clock:
            headers = make_user("designer")[1]
            reply = client.post(f"/api/v1/processes/{process}/instances", json={"data": data}, headers=headers)
            assert reply.status_code == 201, reply.get_json()
            detail = reply.get_json()
            for _ in range(40):
                instance = detail["instance"]
                if instance["status"] != "running":
                    break
                if detail["tasks"]:
                    task = detail["tasks"][0]
                    reply = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=headers, json={
                        "data": task_data.get(task["element_id"], {}), "version": instance["version"]})
                    assert reply.status_code == 200, reply.get_json()
                    detail = reply.get_json()
                elif detail["timers"]:
                    clock.move_to(min(datetime.fromisoformat(t["due_at"]) for t in detail["timers"])
                                  + timedelta(seconds=1))
                    assert poll_timers() >= 1
                    run_worker()
                    headers = make_user("designer")[1]
                    detail = client.get(f"/api/v1/instances/{instance['id']}", headers=headers).get_json()
                else:
                    break
        return detail

    return run


@pytest.mark.parametrize("case", sorted(RUNS))
def test_a_tool_export_deploys_and_runs_to_its_end(case, deploy, drive):
    names, process, data, task_data, make_executable = RUNS[case]
    deployed = deploy(files=_files(*names), make_executable=make_executable or None)
    assert process in {d["process_key"] for d in deployed}
    detail = drive(process, data, task_data)
    assert detail["incidents"] == [] and detail["instance"]["status"] == "completed", detail


def test_every_tool_file_deploys_with_located_warnings_for_what_it_assumed(deploy):
    for folder in sorted(p for p in TOOLS.iterdir() if p.is_dir()):
        bundle = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.bpmn")}
        for result in deploy(files=bundle, make_executable=True):
            for warning in result["warnings"]:
                assert warning["file"] in bundle and warning["element_id"] and warning["message"], warning
                assert "0x" not in warning["message"] and "{http" not in warning["message"], warning


def test_a_non_executable_export_is_refused_with_the_choice_named_and_deploys_when_made_executable(deploy):
    files = _files("signavio/claims_handling.bpmn")
    body = deploy(files=files, expect=422)
    assert "make executable" in body["detail"] and body["element_id"] == "sid-0D9C8B7A-6F5E-4D3C-2B1A-0F9E8D7C6B5A"
    [result] = deploy(files=files, make_executable=True, encoding="utf-8")  # the multipart form field
    assert any("isExecutable" in w["message"] for w in result["warnings"])


def test_an_element_flowdesk_cannot_run_stops_only_the_instance_that_reaches_it(deploy, start):
    [result] = deploy(files=_files("camunda7/invoice_approval.bpmn"))
    [warning] = [w for w in result["warnings"] if w["element_id"] == "Activity_book_credit"]
    assert "com.acme.invoice.BookCreditNoteDelegate" in warning["message"] and warning["line"] == 58
    credit = start("invoice_approval", {"amount": -50, "approver": "demo"})
    reply = credit["tasks"][0]
    assert reply["element_id"] == "Activity_approve"


def test_reaching_an_element_flowdesk_cannot_run_is_a_located_incident(deploy, start, complete):
    deploy(files=_files("camunda7/invoice_approval.bpmn"))
    detail = complete(start("invoice_approval", {"amount": -50, "approver": "demo"}), {"approved": False})
    assert detail["instance"]["status"] == "error"
    [incident] = detail["incidents"]
    assert incident["element_id"] == "Activity_book_credit"
    assert "BookCreditNoteDelegate" in incident["message"] and "cannot run it" in incident["message"]
    assert "Error" not in incident["message"] and "Exception" not in incident["message"]


def test_a_data_store_without_implementation_is_an_incident_on_the_task_that_writes_it(deploy, start, complete):
    [result] = deploy(files=_files("camunda7/leave_request.bpmn"))
    assert any(w["element_id"] == "DataStoreReference_hr" and "HR system" in w["message"] for w in result["warnings"])
    detail = complete(start("leave_request", {"days": 12, "reminderDelay": "PT2H"}), {"approved": False})
    assert [t["element_id"] for t in detail["tasks"]] == ["Activity_record_hr"]  # an untyped task: a person's
    [incident] = complete(detail, {})["incidents"]
    assert incident["element_id"] == "Activity_record_hr" and "'HR system' has no implementation" in incident["message"]


@pytest.fixture
def complete(client, designer):
    """Factory: complete the first open task of an instance detail with data; returns the new detail."""

    def done(detail: dict, data: dict) -> dict:
        task = detail["tasks"][0]
        reply = client.post(f"/api/v1/tasks/{task['id']}/complete", headers=designer,
                            json={"data": data, "version": detail["instance"]["version"]})
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()

    return done


def test_a_job_worker_task_of_zeebe_is_an_incident_when_reached(deploy, start):
    deploy(files=_files("zeebe/order_fulfilment.bpmn", "zeebe/payment_child.bpmn"))
    detail = start("order_fulfilment", {"quantity": 1, "price": 5, "region": "EU", "status": "cancelled"})
    [incident] = detail["incidents"]
    assert incident["element_id"] == "Activity_refund" and "'refund-payment' job worker" in incident["message"]


EMPTY_CALL = inline_model("calls_nothing", """    <bpmn:startEvent id="start"/>
    <bpmn:callActivity id="Call sub-process" name="Call it"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="Call sub-process"/>
    <bpmn:sequenceFlow id="f2" sourceRef="Call sub-process" targetRef="end"/>""")


def test_a_call_activity_with_an_empty_called_element_deploys_and_is_an_incident_when_reached(deploy, start):
    [result] = deploy(files={"calls.bpmn": EMPTY_CALL})
    [warning] = result["warnings"]
    assert warning["element_id"] == "Call sub-process" and "calledElement is empty" in warning["message"]
    [incident] = start("calls_nothing")["incidents"]
    assert incident["element_id"] == "Call sub-process" and "names no process to call" in incident["message"]


def test_ids_that_are_not_xs_id_are_accepted_and_shown_as_the_designer_wrote_them(deploy, start, complete, app):
    deploy(files=_files("eclipse/purchase_order.bpmn"), make_executable=True)
    detail = start("purchase_order", {"amount": 50, "urgent": False})
    assert [t["element_id"] for t in detail["tasks"]] == ["Check budget"]
    detail = complete(detail, {})
    assert [t["element_id"] for t in detail["tasks"]] == ["Ask 2 quotes"]
    with app.app_context():
        from server.processes.instances import element_states

        states = element_states(detail["instance"]["id"])
    assert "Check budget" in states["completed"] and "Ask 2 quotes" in states["active"]


def test_a_refusal_on_an_element_with_a_tolerated_id_names_the_original_id(deploy):
    text = _files("eclipse/purchase_order.bpmn")["purchase_order.bpmn"]
    broken = text.replace("SequenceFlow_3", "Flow 3").replace("amount &gt; 1000 &amp;&amp; !urgent",
                                                              "amount &gt;&gt;&gt;")
    body = deploy(files={"purchase_order.bpmn": broken}, make_executable=True, expect=422)
    assert body["element_id"] == "Flow 3" and body["line"] and "cannot be translated" in body["detail"]


# -- expressions -------------------------------------------------------------------------
GATEWAY = inline_model("choose", """    <bpmn:startEvent id="start"/>
    <bpmn:exclusiveGateway id="decide" default="no"/>
    <bpmn:endEvent id="took_yes"/>
    <bpmn:endEvent id="took_no"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="decide"/>
    <bpmn:sequenceFlow id="yes" sourceRef="decide" targetRef="took_yes">
      <bpmn:conditionExpression>CONDITION</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="no" sourceRef="decide" targetRef="took_no"/>""")


@pytest.mark.parametrize("condition, data, taken", [
    ("${amount &gt; 1000}", {"amount": 1500}, "took_yes"),
    ("${amount gt 1000 and !blocked}", {"amount": 1500, "blocked": True}, "took_no"),
    ("#{empty note}", {"note": ""}, "took_yes"),
    ("${order.total ge 10}", {"order": {"total": 12}}, "took_yes"),
    ("${order.total ge 10}", {}, "took_no"),  # an unset name reads as null: the condition does not hold
    ("=amount &gt; 1000", {"amount": 10}, "took_no"),
    ("=score in [1..10]", {"score": 10}, "took_yes"),
    ("=score in (1..10)", {"score": 10}, "took_no"),
    ('=region in ("EU", "UK")', {"region": "UK"}, "took_yes"),
    ('=not(approved) or status = "vip"', {"approved": True, "status": "vip"}, "took_yes"),
    ("=amount between 5 and 9", {"amount": 7}, "took_yes"),
    ("amount &gt; 1000 &amp;&amp; !urgent", {"amount": 2000, "urgent": False}, "took_yes"),
    ("approved == true || amount &lt; 10", {"approved": False, "amount": 5}, "took_yes"),
    ('"gold".equals(customer.tier)', {"customer": {"tier": "gold"}}, "took_yes"),
    ("amount &gt; 1000 and not urgent", {"amount": 2000, "urgent": True}, "took_no"),  # Python, as written
])
def test_conditions_in_each_tools_dialect_choose_the_path(deploy, start, app, condition, data, taken):
    deploy(files={"choose.bpmn": GATEWAY.replace("CONDITION", condition)})
    detail = start("choose", data)
    assert detail["instance"]["status"] == "completed", detail["incidents"]
    assert _reached(app, detail) == taken


def _reached(app, detail) -> str:
    """The end event an instance reached."""
    from server.processes.instances import element_states

    with app.app_context():
        completed = element_states(detail["instance"]["id"])["completed"]
    return next(e for e in completed if e.startswith("took_"))


@pytest.mark.parametrize("condition, column_hint", [
    ("${invoice.calculate()}", "calculate()"),
    ("=amount &gt;", "end of the expression"),
    ("${a} ${b}", "only one"),
])
def test_a_condition_that_cannot_be_translated_is_refused_on_its_flow_and_line(deploy, condition, column_hint):
    body = deploy(files={"choose.bpmn": GATEWAY.replace("CONDITION", condition)}, expect=422)
    assert body["element_id"] == "yes" and body["line"] == 10 and column_hint in body["detail"]
    assert "Traceback" not in body["detail"] and "SyntaxError" not in body["detail"]
