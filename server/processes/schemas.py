"""Marshmallow schemas for the process API (they also feed /api/openapi.json)."""

from marshmallow import Schema, fields, validate

from .forms import form_validator


class FilesInputSchema(Schema):
    """A bundle as JSON: file name → XML text (multipart upload with 'files' is also accepted)."""

    files = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class DeployResultSchema(Schema):
    process_key = fields.String()
    version = fields.Integer()
    created = fields.Boolean(metadata={"description": "false when the content was unchanged"})
    id = fields.Integer()


class ParsedProcessSchema(Schema):
    process_id = fields.String()
    name = fields.String()
    file_name = fields.String()
    content_hash = fields.String()
    form_keys = fields.Dict(keys=fields.String(), values=fields.String())


class ValidationResultSchema(Schema):
    valid = fields.Boolean()
    dialect = fields.String()
    processes = fields.List(fields.Nested(ParsedProcessSchema))


class ProcessSummarySchema(Schema):
    process_key = fields.String()
    name = fields.String()
    latest_version = fields.Integer()
    versions = fields.Integer()
    deployed_at = fields.DateTime()


class ProcessVersionSchema(Schema):
    id = fields.Integer()
    process_key = fields.String()
    version = fields.Integer()
    name = fields.String()
    dialect = fields.String()
    file_name = fields.String()
    content_hash = fields.String()
    source = fields.String()
    deployed_at = fields.DateTime()


class StartInstanceSchema(Schema):
    data = fields.Dict(load_default=dict)
    version = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))
    business_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class HumanTaskSchema(Schema):
    id = fields.Integer()
    instance_id = fields.Integer()
    task_guid = fields.String()
    element_id = fields.String()
    name = fields.String()
    lane = fields.String(allow_none=True)
    form_key = fields.String(allow_none=True)
    candidate_role = fields.String(allow_none=True)
    assignee_id = fields.Integer(allow_none=True)
    status = fields.String()
    due_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    completed_by_id = fields.Integer(allow_none=True)
    instance_version = fields.Integer(metadata={"description": "pass back as 'version' when completing"})


class InstanceTaskSchema(HumanTaskSchema):
    """A task as listed inside an instance (the instance version is on the instance)."""

    class Meta:
        exclude = ("instance_version",)


class TaskDetailSchema(HumanTaskSchema):
    form_schema = fields.Method("_form_schema", allow_none=True)
    data = fields.Function(lambda t: t.instance.data)

    def _form_schema(self, task):
        if not task.form_key:
            return None
        return form_validator(task.form_key).schema


class TimerSchema(Schema):
    id = fields.Integer()
    element_id = fields.String()
    kind = fields.String()
    due_at = fields.DateTime()
    fired_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)


class IncidentSchema(Schema):
    id = fields.Integer()
    element_id = fields.String(allow_none=True)
    message = fields.String()
    line = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)


class SubscriptionSchema(Schema):
    element_id = fields.String()
    message_name = fields.String()
    correlation_key = fields.String(allow_none=True)


class InstanceSchema(Schema):
    id = fields.Integer()
    process_key = fields.String()
    process_version = fields.Integer(attribute="process_version_number")
    business_key = fields.String(allow_none=True)
    status = fields.String()
    version = fields.Integer(metadata={"description": "optimistic-lock counter; send it back on writes"})
    active_element_ids = fields.List(fields.String())
    started_at = fields.DateTime()
    updated_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)


class InstanceDetailSchema(Schema):
    instance = fields.Nested(InstanceSchema)
    data = fields.Function(lambda v: v["instance"].data)
    tasks = fields.List(fields.Nested(InstanceTaskSchema))
    timers = fields.List(fields.Nested(TimerSchema))
    incidents = fields.List(fields.Nested(IncidentSchema))
    messages = fields.List(fields.Nested(SubscriptionSchema))


class InstanceListQuerySchema(Schema):
    process_key = fields.String(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(
        ["running", "completed", "error", "suspended", "terminated"]))
    business_key = fields.String(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    after = fields.Integer(load_default=None, metadata={"description": "cursor: ids below this"})


class LifecycleSchema(Schema):
    version = fields.Integer(load_default=None, allow_none=True)
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    data = fields.Dict(load_default=None, allow_none=True, metadata={"description": "retry: data fix"})
    to_latest = fields.Boolean(load_default=False, metadata={
        "description": "retry: move the instance to the latest deployed version first (after a fix is deployed)"})


class AuditEventSchema(Schema):
    id = fields.Integer()
    instance_id = fields.Integer(allow_none=True)
    event = fields.String()
    element_id = fields.String(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    client = fields.String(allow_none=True)
    data = fields.Dict(allow_none=True)
    created_at = fields.DateTime()


class TaskListQuerySchema(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    after = fields.Integer(load_default=None)


class CompleteTaskSchema(Schema):
    data = fields.Dict(load_default=dict)
    version = fields.Integer(required=True, metadata={"description": "the instance version the client saw"})


class AssignTaskSchema(Schema):
    assignee_id = fields.Integer(required=True, allow_none=True)


class MessageInputSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    correlation_key = fields.String(load_default=None, allow_none=True)
    payload = fields.Dict(load_default=dict)


class MessageResultSchema(Schema):
    delivered_to = fields.List(fields.Integer())
