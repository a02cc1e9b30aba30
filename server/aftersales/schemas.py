"""Schemas of the after-sales API and the engineers' mobile API (they feed /api/openapi.json)."""

from marshmallow import Schema, fields, validate

from .models import ENGINEER_STATUSES, PAYMENT_METHODS, PRIORITIES
from .sla import sla_state


class AccountSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    tier = fields.String()


class AssetSchema(Schema):
    id = fields.Integer()
    serial = fields.String()
    model = fields.String()
    product_line = fields.String()
    account = fields.Nested(AccountSchema)
    site_address = fields.String()
    lat = fields.Float()
    lon = fields.Float()
    install_date = fields.Date(allow_none=True)
    warranty_end = fields.Date(allow_none=True)
    contract_end = fields.Date(allow_none=True)


class EngineerSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    skills = fields.List(fields.String(), attribute="skill_list")
    status = fields.String()
    shift_start = fields.String()
    shift_end = fields.String()
    home_lat = fields.Float()
    home_lon = fields.Float()
    last_lat = fields.Float(allow_none=True)
    last_lon = fields.Float(allow_none=True)
    last_seen_at = fields.DateTime(allow_none=True)
    open_jobs = fields.Integer()


class EventSchema(Schema):
    status = fields.String()
    engineer_id = fields.Integer(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    lat = fields.Float(allow_none=True)
    lon = fields.Float(allow_none=True)
    note = fields.String(allow_none=True)
    at = fields.DateTime()


class ClockSchema(Schema):
    due_at = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "pending / ok / warning / breached / met"})
    minutes_left = fields.Float(allow_none=True)


class SlaSchema(Schema):
    response = fields.Nested(ClockSchema)
    resolution = fields.Nested(ClockSchema)


def _sla(req):
    return sla_state(req)


class ServiceRequestSchema(Schema):
    id = fields.Integer()
    asset_id = fields.Integer()
    account_id = fields.Integer()
    tier = fields.String()
    priority = fields.String()
    required_skill = fields.String()
    description = fields.String()
    source = fields.String()
    status = fields.String()
    covered_by = fields.String(allow_none=True)
    engineer_id = fields.Integer(allow_none=True)
    instance_id = fields.Integer(allow_none=True)
    visits = fields.Integer()
    first_time_fix = fields.Boolean(allow_none=True)
    amount_due = fields.Float(allow_none=True)
    escalated_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    responded_at = fields.DateTime(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    sla = fields.Function(_sla, metadata={"description": "SLA clocks"})


class HistoryEntrySchema(Schema):
    request_id = fields.Integer()
    created_at = fields.String()
    status = fields.String()
    description = fields.String()
    notes = fields.String(allow_none=True)
    first_time_fix = fields.Boolean(allow_none=True)
    parts = fields.List(fields.Dict())


class PartUsageSchema(Schema):
    id = fields.Integer()
    part_id = fields.Integer()
    sku = fields.String(attribute="part.sku")
    name = fields.String(attribute="part.name")
    quantity = fields.Integer()
    status = fields.String()
    location = fields.String(attribute="stock.location")
    unit_price = fields.Float()


class ServiceRequestDetailSchema(ServiceRequestSchema):
    asset = fields.Nested(AssetSchema)
    engineer = fields.Nested(EngineerSchema, allow_none=True)
    events = fields.List(fields.Nested(EventSchema))
    history = fields.List(fields.Nested(HistoryEntrySchema), metadata={"description": "earlier requests on the asset"})
    parts = fields.List(fields.Nested(PartUsageSchema))
    work_notes = fields.String(allow_none=True)
    labour_minutes = fields.Integer(allow_none=True)


class ServiceRequestInputSchema(Schema):
    asset_id = fields.Integer(required=True)
    description = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    priority = fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))
    reporter_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    reporter_phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=50))


class RequestListQuerySchema(Schema):
    status = fields.String(load_default=None)
    open = fields.Boolean(load_default=False)
    engineer_id = fields.Integer(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Integer(load_default=None, metadata={"description": "next_cursor of the previous page"})


class DispatchOverrideSchema(Schema):
    engineer_id = fields.Integer(required=True)


class AssetQrSchema(Schema):
    asset_id = fields.Integer()
    url = fields.String()
    svg = fields.String()


class ReportQuerySchema(Schema):
    since = fields.Date(load_default=None)
    until = fields.Date(load_default=None)


class ServiceReportSchema(Schema):
    period = fields.Dict()
    requests = fields.Integer()
    sla = fields.Dict(metadata={"description": "response/resolution: met, breached, compliance %"})
    first_time_fix_rate = fields.Float(allow_none=True)
    mean_minutes_to_respond = fields.Float(allow_none=True)
    mean_minutes_to_repair = fields.Float(allow_none=True)
    engineers = fields.List(fields.Dict())
    failures_by_model = fields.List(fields.Dict())


# -- mobile API -----------------------------------------------------------------------
class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)


class WorkOrderPageSchema(PageSchema):
    items = fields.List(fields.Nested(ServiceRequestSchema))


class PartSchema(Schema):
    id = fields.Integer()
    sku = fields.String()
    name = fields.String()
    product_line = fields.String(allow_none=True)
    unit_price = fields.Float()
    van = fields.Integer(metadata={"description": "free in my van"})
    warehouse = fields.Integer(metadata={"description": "free in the warehouse"})


class PartPageSchema(PageSchema):
    items = fields.List(fields.Nested(PartSchema))


class PartsQuerySchema(Schema):
    q = fields.String(load_default="")
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Integer(load_default=None)


class WorkOrderQuerySchema(Schema):
    scope = fields.String(load_default="open", validate=validate.OneOf(["offered", "open", "closed"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Integer(load_default=None)


class PositionSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(min=-90, max=90))
    lon = fields.Float(required=True, validate=validate.Range(min=-180, max=180))
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class EngineerStatusSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(ENGINEER_STATUSES))


class DeclineSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class StatusChangeSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["en_route", "on_site"]))
    lat = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=-90, max=90))
    lon = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=-180, max=180))


class WorkDoneSchema(Schema):
    fixed = fields.Boolean(required=True)
    notes = fields.String(load_default="", validate=validate.Length(max=5000))
    labour_minutes = fields.Integer(required=True, validate=validate.Range(min=0, max=1440))


class PartActionSchema(Schema):
    part_id = fields.Integer(required=True)
    quantity = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))
    source = fields.String(load_default="van", validate=validate.OneOf(["van", "warehouse"]))


class PartReturnSchema(Schema):
    usage_id = fields.Integer(required=True)
    quantity = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))


class PaymentInputSchema(Schema):
    method = fields.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    amount = fields.Decimal(required=True, places=2, as_string=True)
    reference = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))


class PaymentSchema(Schema):
    id = fields.Integer()
    request_id = fields.Integer()
    amount = fields.Float()
    method = fields.String()
    reference = fields.String(allow_none=True)
    receipt_number = fields.String()
    created_at = fields.DateTime()


class CompleteJobSchema(Schema):
    summary = fields.String(load_default="", validate=validate.Length(max=2000))


class JobSheetSchema(Schema):
    request_id = fields.Integer()
    status = fields.String()
    asset = fields.Dict()
    engineer = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    labour_minutes = fields.Integer(allow_none=True)
    covered_by = fields.String(allow_none=True)
    parts = fields.List(fields.Dict())
    amount_due = fields.Float(allow_none=True)
    payment = fields.Dict(allow_none=True)
    rating_url = fields.String(allow_none=True)
    rating_qr_svg = fields.String(allow_none=True)
