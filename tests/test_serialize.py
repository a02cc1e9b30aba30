"""The compiled dumpers used by hot endpoints answer exactly what the marshmallow schema would."""

import pytest

from server.processes.instances import instance_view
from server.processes.schemas import InstanceDetailSchema, ProcessVersionSchema, TimerSchema
from server.serialize import compiled_dumper, dumps


@pytest.mark.parametrize("model, process_key", [
    ("approval_escalation.bpmn", "approval_escalation"),  # a task with a due date, boundary timers
    ("payment_wait.bpmn", "payment_wait"),  # a message wait
    ("failing_script.bpmn", "failing_script"),  # an incident
])
def test_compiled_dumper_equals_marshmallow(deploy, start, ctx, model, process_key):
    deploy(model)
    detail = start(process_key, {"amount": 10})
    view = instance_view(detail["instance"]["id"])
    schema = InstanceDetailSchema()
    assert compiled_dumper(schema)(view) == schema.dump(view)
    assert detail == schema.dump(view)  # what the HTTP answer carried


def test_compiled_dumper_many_and_missing_attributes():
    schema = TimerSchema(many=True)
    rows = [{"id": 1, "element_id": "t", "kind": "duration", "due_at": None}]  # no fired/cancelled keys
    assert compiled_dumper(schema)(rows) == schema.dump(rows)
    assert compiled_dumper(ProcessVersionSchema())({}) == ProcessVersionSchema().dump({})


def test_json_column_serializer_handles_big_integers():
    assert dumps({"n": 2**70, 1: "x"}) in ('{"n": 1180591620717411303424, "1": "x"}',
                                           '{"n":1180591620717411303424,"1":"x"}')


def test_the_inbox_answers_what_the_task_schema_describes(deploy, start, client, make_user, app):
    from server.auth.models import User
    from server.extensions import db
    from server.processes.schemas import HumanTaskSchema
    from server.processes.tasks import inbox

    deploy("approval_escalation.bpmn")
    for _ in range(3):
        start("approval_escalation", {"amount": 10})
    _, admin_headers = make_user("admin")
    answer = client.get("/api/v1/tasks", headers=admin_headers).get_json()
    with app.app_context():
        admin = User(username="x", password_hash="-", roles=["admin"])
        assert answer == HumanTaskSchema(many=True).dump(inbox(admin)) != []
        db.session.rollback()
