"""HTTP API for designers and admins (process models, instances) and for
everyone with work to do (task inbox). Thin: parse, call one service, dump."""

from __future__ import annotations

from flask import Response, request
from flask_smorest import Blueprint

from ..auth.access import client_label, current_principal, roles_required
from ..db import transaction
from ..errors import NotFound, ValidationFailed
from ..serialize import compiled_dumper, json_response
from . import deploy as deployment
from . import instances, messages, tasks
from .schemas import (
    AssignTaskSchema,
    AuditEventSchema,
    CompleteTaskSchema,
    DeployResultSchema,
    FilesInputSchema,
    HumanTaskSchema,
    InstanceDetailSchema,
    InstanceListQuerySchema,
    InstanceSchema,
    LifecycleSchema,
    MessageInputSchema,
    MessageResultSchema,
    ProcessSummarySchema,
    ProcessVersionSchema,
    StartInstanceSchema,
    TaskDetailSchema,
    TaskListQuerySchema,
    ValidationResultSchema,
)

blp = Blueprint("processes", __name__, url_prefix="/api/v1", description="Process models, instances, tasks")

DESIGN = ("designer", "admin")
MANAGE_TASKS = ("designer", "admin", "sales_manager", "director", "dispatcher", "service_manager")


def _uploaded_bundle() -> dict[str, bytes]:
    """A bundle from a multipart upload ('files') or a JSON body {files: {name: xml}}."""
    if request.files:
        return {f.filename or "upload.bpmn": f.read() for f in request.files.getlist("files")}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("send multipart 'files' or JSON {\"files\": {name: xml}}")
    loaded = FilesInputSchema().load(body)
    return {name: text.encode("utf-8") for name, text in loaded["files"].items()}


@blp.route("/processes", methods=["GET"])
@blp.response(200, ProcessSummarySchema(many=True))
@roles_required(*DESIGN)
def list_processes():
    """List deployed processes with their latest version."""
    return deployment.list_processes()


_BUNDLE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": FilesInputSchema},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
}}}


@blp.route("/processes", methods=["POST"])
@blp.doc(**_BUNDLE_BODY)
@blp.response(201, DeployResultSchema(many=True))
@roles_required(*DESIGN)
def deploy():
    """Validate and deploy a bundle of BPMN/DMN files; changed processes get a new version."""
    files = _uploaded_bundle()
    with transaction():
        return deployment.deploy_bundle(files, actor=current_principal(), client=client_label())


@blp.route("/processes/validate", methods=["POST"])
@blp.doc(**_BUNDLE_BODY)
@blp.response(200, ValidationResultSchema)
@roles_required(*DESIGN)
def validate_bundle():
    """Check a bundle without deploying it (422 with file, element id and line when invalid)."""
    bundle = deployment.validate_bundle(_uploaded_bundle())
    return {"valid": True, "dialect": bundle.dialect, "processes": bundle.processes}


@blp.route("/processes/<process_key>/versions", methods=["GET"])
@blp.response(200, ProcessVersionSchema(many=True))
@roles_required(*DESIGN)
def list_versions(process_key):
    """All versions of a process, newest first."""
    return deployment.list_versions(process_key)


@blp.route("/processes/<process_key>/versions/<int:version>/xml", methods=["GET"])
@blp.response(200, {"type": "string"}, content_type="application/xml")
@roles_required(*DESIGN)
def version_xml(process_key, version):
    """The BPMN XML of a version."""
    name, xml = deployment.version_xml(process_key, version)
    return Response(xml, mimetype="application/xml", headers={"Content-Disposition": f'inline; filename="{name}"'})


# The two hottest endpoints (start, complete) load their body and dump their answer with the same
# schemas, but without webargs and marshmallow's per-field machinery: see server/serialize.py.
_start_schema, _complete_schema = StartInstanceSchema(), CompleteTaskSchema()
_dump_detail = compiled_dumper(InstanceDetailSchema())
_dump_tasks = compiled_dumper(HumanTaskSchema(many=True))  # the inbox: polled by every open page and phone


def _json_body(schema):
    """The JSON object body loaded with ``schema`` (422 per field via the marshmallow handler)."""
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    return schema.load(body)


def _json_request_body(schema_cls) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema_cls}}}}


@blp.route("/processes/<process_key>/instances", methods=["POST"])
@blp.doc(**_json_request_body(StartInstanceSchema))
@blp.response(201, InstanceDetailSchema)
@roles_required(*DESIGN)
def start_instance(process_key):
    """Start an instance of the latest (or a given) version with input data."""
    body = _json_body(_start_schema)
    with transaction():
        view = instances.start_instance(process_key, body["data"], version=body["version"],
                                        business_key=body["business_key"], actor=current_principal(),
                                        client=client_label())
    return json_response(_dump_detail(view), 201)


@blp.route("/instances", methods=["GET"])
@blp.arguments(InstanceListQuerySchema, location="query")
@blp.response(200, InstanceSchema(many=True))
@roles_required(*DESIGN)
def list_instances(query):
    """Instances filtered by process, status and business key; cursor with ``after``."""
    return instances.list_instances(process_key=query["process_key"], status=query["status"],
                                    business_key=query["business_key"], limit=query["limit"],
                                    after_id=query["after"])


@blp.route("/instances/<int:instance_id>", methods=["GET"])
@blp.response(200, InstanceDetailSchema)
@roles_required(*DESIGN)
def get_instance(instance_id):
    """An instance: status, data, active elements, open tasks, timers, incidents, message waits."""
    return instances.instance_view(instance_id)


@blp.route("/instances/<int:instance_id>/audit", methods=["GET"])
@blp.response(200, AuditEventSchema(many=True))
@roles_required(*DESIGN)
def instance_audit(instance_id):
    """The instance's audit trail, oldest first."""
    return instances.audit_trail(instance_id)


def _lifecycle(action, instance_id, body):
    kwargs = {"expected_version": body["version"], "client": client_label()}
    if action is instances.terminate_instance:
        kwargs["reason"] = body["reason"]
    if action is instances.retry_instance:
        kwargs["data"], kwargs["to_latest"] = body["data"], body["to_latest"]
    with transaction():
        result = action(instance_id, current_principal(), **kwargs)
    return result if isinstance(result, dict) else instances.instance_view(instance_id)


@blp.route("/instances/<int:instance_id>/suspend", methods=["POST"])
@blp.arguments(LifecycleSchema)
@blp.response(200, InstanceDetailSchema)
@roles_required(*DESIGN)
def suspend(body, instance_id):
    """Suspend an instance."""
    return _lifecycle(instances.suspend_instance, instance_id, body)


@blp.route("/instances/<int:instance_id>/resume", methods=["POST"])
@blp.arguments(LifecycleSchema)
@blp.response(200, InstanceDetailSchema)
@roles_required(*DESIGN)
def resume(body, instance_id):
    """Resume a suspended instance."""
    return _lifecycle(instances.resume_instance, instance_id, body)


@blp.route("/instances/<int:instance_id>/terminate", methods=["POST"])
@blp.arguments(LifecycleSchema)
@blp.response(200, InstanceDetailSchema)
@roles_required(*DESIGN)
def terminate(body, instance_id):
    """Terminate an instance (cancels its tasks, timers and message waits)."""
    return _lifecycle(instances.terminate_instance, instance_id, body)


@blp.route("/instances/<int:instance_id>/retry", methods=["POST"])
@blp.arguments(LifecycleSchema)
@blp.response(200, InstanceDetailSchema)
@roles_required(*DESIGN)
def retry(body, instance_id):
    """Retry an instance in error, optionally merging a data fix into the failed task."""
    return _lifecycle(instances.retry_instance, instance_id, body)


@blp.route("/tasks", methods=["GET"])
@blp.arguments(TaskListQuerySchema, location="query")
@blp.response(200, HumanTaskSchema(many=True))
@roles_required()
def my_tasks(query):
    """My inbox: tasks assigned to me or open to one of my roles (one SQL query)."""
    rows = tasks.inbox(current_principal(), limit=query["limit"], after_id=query["after"])
    return json_response(_dump_tasks(rows))


@blp.route("/tasks/<int:task_id>", methods=["GET"])
@blp.response(200, TaskDetailSchema)
@roles_required()
def get_task(task_id):
    """A task with its form schema and the instance data."""
    task = tasks.get_task(task_id)
    if not tasks.can_act_on(task, current_principal()):
        raise NotFound(f"task {task_id} does not exist")
    return task


@blp.route("/tasks/<int:task_id>/claim", methods=["POST"])
@blp.response(200, HumanTaskSchema)
@roles_required()
def claim(task_id):
    """Claim an unassigned task."""
    with transaction():
        task = tasks.claim_task(task_id, current_principal(), client=client_label())
    return tasks.get_task(task.id)


@blp.route("/tasks/<int:task_id>/assign", methods=["POST"])
@blp.arguments(AssignTaskSchema)
@blp.response(200, HumanTaskSchema)
@roles_required(*MANAGE_TASKS)
def assign(body, task_id):
    """Assign a task to a user (or unassign with null)."""
    with transaction():
        tasks.assign_task(task_id, body["assignee_id"], current_principal(), client=client_label())
    return tasks.get_task(task_id)


@blp.route("/tasks/<int:task_id>/complete", methods=["POST"])
@blp.doc(**_json_request_body(CompleteTaskSchema))
@blp.response(200, InstanceDetailSchema)
@roles_required()
def complete(task_id):
    """Complete a task with form data; 422 lists failing fields, 409 when the version is stale."""
    body = _json_body(_complete_schema)
    with transaction():
        view = tasks.complete_task(task_id, body["data"], current_principal(),
                                   expected_version=body["version"], client=client_label())
    return json_response(_dump_detail(view))


@blp.route("/messages", methods=["POST"])
@blp.arguments(MessageInputSchema)
@blp.response(200, MessageResultSchema)
@roles_required(*DESIGN)
def send_message(body):
    """Correlate a message (name + correlation key) to the instances waiting for it."""
    with transaction():
        delivered = messages.deliver_message(body["name"], body["correlation_key"], body["payload"],
                                             actor=current_principal(), client=client_label())
    return {"delivered_to": delivered}

