"""Schemas of the sales API (they feed /api/openapi.json)."""

from marshmallow import Schema, fields, validate

from .models import STAGES
from .quotes import quote_totals


class LeadInputSchema(Schema):
    company = fields.String(required=True, validate=validate.Length(min=1, max=200))
    contact_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=50))
    industry = fields.String(load_default=None, allow_none=True)
    region = fields.String(load_default=None, allow_none=True)
    product_line = fields.String(load_default=None, allow_none=True)
    company_size = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0))
    engagement = fields.Integer(load_default=0, validate=validate.Range(min=0))
    notes = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5000))
    source = fields.String(load_default="api", validate=validate.Length(max=30))


class WebFormLeadSchema(LeadInputSchema):
    website = fields.String(load_default="", metadata={"description": "leave empty (spam trap)"})


class LeadSchema(Schema):
    id = fields.Integer()
    company = fields.String()
    contact_name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    source = fields.String()
    industry = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    product_line = fields.String(allow_none=True)
    score = fields.Integer(allow_none=True)
    grade = fields.String(allow_none=True)
    status = fields.String()
    team_id = fields.Integer(allow_none=True)
    owner_id = fields.Integer(allow_none=True)
    duplicate_of_id = fields.Integer(allow_none=True)
    opportunity_id = fields.Integer(allow_none=True)
    instance_id = fields.Integer(allow_none=True)
    notes = fields.String(allow_none=True)
    created_at = fields.DateTime()


class CaptureResultSchema(Schema):
    outcome = fields.String(metadata={
        "description": "created / merged (same e-mail or phone) / flagged (same company)"})
    lead = fields.Nested(LeadSchema)


class WebFormResultSchema(Schema):
    outcome = fields.String()


class ImportReportSchema(Schema):
    accepted = fields.Integer()
    created = fields.Integer()
    merged = fields.Integer()
    flagged = fields.Integer()
    rejected = fields.List(fields.Dict(), metadata={"description": "line and reason of each refused row"})


class ListQuerySchema(Schema):
    status = fields.String(load_default=None)
    pool = fields.Boolean(load_default=False)
    stage = fields.String(load_default=None, validate=validate.OneOf(STAGES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    cursor = fields.Integer(load_default=None)


class OpportunitySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    account_id = fields.Integer()
    contact_id = fields.Integer(allow_none=True)
    owner_id = fields.Integer()
    team_id = fields.Integer(allow_none=True)
    product_line = fields.String(allow_none=True)
    stage = fields.String()
    amount = fields.Float()
    needs = fields.String(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    flagged_duplicate_of_id = fields.Integer(allow_none=True)
    instance_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    stage_entered_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class OpportunityDetailSchema(OpportunitySchema):
    history = fields.List(fields.Dict(), metadata={"description": "stages with days spent in each"})
    next_step = fields.Dict(allow_none=True, metadata={"description": "the open task: id, element, form"})


class QuoteLineInputSchema(Schema):
    product_id = fields.Integer(required=True)
    quantity = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))


class QuoteInputSchema(Schema):
    opportunity_id = fields.Integer(required=True)
    discount_percent = fields.Decimal(load_default=0, places=2, as_string=True)
    lines = fields.List(fields.Nested(QuoteLineInputSchema), required=True, validate=validate.Length(min=1))


def _totals(quote):
    return quote_totals(quote)


class QuoteSchema(Schema):
    id = fields.Integer()
    opportunity_id = fields.Integer()
    status = fields.String()
    discount_percent = fields.Float()
    approval_chain = fields.List(fields.String())
    decisions = fields.List(fields.Dict())
    totals = fields.Function(lambda quote: _totals(quote))
    sent_at = fields.DateTime(allow_none=True)


class ProductSchema(Schema):
    id = fields.Integer()
    sku = fields.String()
    name = fields.String()
    product_line = fields.String()
    list_price = fields.Float()


class FunnelQuerySchema(Schema):
    team_id = fields.Integer(load_default=None)
    owner_id = fields.Integer(load_default=None)
    since = fields.AwareDateTime(load_default=None)
    until = fields.AwareDateTime(load_default=None)


class FunnelSchema(Schema):
    stages = fields.List(fields.Dict())
    lost_reasons = fields.List(fields.Dict())
    weighted_forecast = fields.Float()
    opportunities = fields.Integer()


class ApprovalSchema(Schema):
    task_id = fields.Integer()
    status = fields.String()
    level = fields.String(allow_none=True)
    quote = fields.Dict()
    opportunity = fields.Dict()
    account = fields.Dict()
    lines = fields.List(fields.Dict())
    history = fields.List(fields.Dict())


class DecisionSchema(Schema):
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))


class DelegateSchema(Schema):
    delegate_id = fields.Integer(required=True)


class AccountSummarySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    tier = fields.String()
    contacts = fields.List(fields.Dict())
    last_activity = fields.String()


class ContractSchema(Schema):
    id = fields.Integer()
    opportunity_id = fields.Integer()
    quote_id = fields.Integer()
    value = fields.Float()
    status = fields.String()
    signed_at = fields.DateTime(allow_none=True)
    signed_by = fields.String(allow_none=True)
