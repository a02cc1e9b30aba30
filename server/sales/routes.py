"""Sales HTTP: leads (API, public web form, CSV import), opportunities with
their stage steps, products, quotes, the funnel — and the approver's page."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from ..auth.access import client_label, current_principal, public, roles_required
from ..db import transaction
from ..errors import ValidationFailed
from ..extensions import db
from ..security.ratelimit import public_limit
from . import accounts, leads, opportunities, quotes
from . import funnel as funnel_report
from .models import Product
from .schemas import (
    AccountSummarySchema,
    CaptureResultSchema,
    ContractSchema,
    FunnelQuerySchema,
    FunnelSchema,
    ImportReportSchema,
    LeadInputSchema,
    LeadSchema,
    ListQuerySchema,
    OpportunityDetailSchema,
    OpportunitySchema,
    ProductSchema,
    QuoteInputSchema,
    QuoteSchema,
    WebFormLeadSchema,
    WebFormResultSchema,
)

blp = Blueprint("sales", __name__, url_prefix="/api/v1", description="Leads, opportunities, quotes, funnel")

SALES = ("sales_rep", "sales_manager", "director", "finance", "admin")


@blp.route("/leads", methods=["POST"])
@blp.arguments(LeadInputSchema)
@blp.response(201, CaptureResultSchema)
@roles_required(*SALES)
def create_lead(body):
    """Capture a lead (merged into an existing one with the same e-mail/phone, flagged on the same company)."""
    source = body.pop("source")
    with transaction():
        lead, outcome = leads.capture_lead(body, source=source, actor=current_principal(), client=client_label())
    return {"outcome": outcome, "lead": lead}


@blp.route("/public/leads", methods=["POST"])
@blp.arguments(WebFormLeadSchema)
@blp.response(202, WebFormResultSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@public_limit("RATE_LEAD_FORM")
@public
def web_form_lead(body):
    """The website's contact form: rate-limited per address, a honeypot field, no login."""
    if body.pop("website", ""):
        return {"outcome": "created"}  # a bot filled the hidden field: answer as usual, store nothing
    body.pop("source", None)
    with transaction():
        _, outcome = leads.capture_lead(body, source="web", client=client_label())
    return {"outcome": "created" if outcome == "flagged" else outcome}


@blp.route("/leads/import", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}}})
@blp.response(200, ImportReportSchema)
@roles_required("sales_manager", "director", "admin")
def import_leads():
    """Import leads from a CSV file: a report of rows accepted and rejected (with the reason per row)."""
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("send the CSV as multipart field 'file'", errors=[{"field": "file",
                                                                                 "message": "required"}])
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the file is not UTF-8 text", errors=[{"field": "file", "message": "not UTF-8"}]) \
            from None
    with transaction():
        return leads.import_leads_csv(text, actor=current_principal(), client=client_label())


@blp.route("/leads", methods=["GET"])
@blp.arguments(ListQuerySchema, location="query")
@blp.response(200, LeadSchema(many=True))
@roles_required(*SALES)
def list_leads(query):
    """Leads I may see (own / team / all by role); ``pool=true`` lists unowned leads."""
    return leads.list_leads(current_principal(), status=query["status"], pool=query["pool"],
                            limit=query["limit"], after_id=query["cursor"])


@blp.route("/leads/<int:lead_id>", methods=["GET"])
@blp.response(200, LeadSchema)
@roles_required(*SALES)
def get_lead(lead_id):
    """One lead (404 when it is not mine to see)."""
    return leads.get_lead(lead_id, current_principal())


def _detail(opp):
    task = opportunities.next_step(opp.instance_id)
    columns = {c.key: getattr(opp, c.key) for c in type(opp).__mapper__.column_attrs}
    return {**columns, "history": opportunities.stage_history(opp.id),
            "next_step": {"task_id": task.id, "element_id": task.element_id, "form_key": task.form_key,
                          "instance_version": task.instance_version} if task else None}


@blp.route("/opportunities", methods=["GET"])
@blp.arguments(ListQuerySchema, location="query")
@blp.response(200, OpportunitySchema(many=True))
@roles_required(*SALES)
def list_opportunities(query):
    """Opportunities I may see, by stage."""
    return opportunities.list_opportunities(current_principal(), stage=query["stage"], limit=query["limit"],
                                            after_id=query["cursor"])


@blp.route("/opportunities/<int:opportunity_id>", methods=["GET"])
@blp.response(200, OpportunityDetailSchema)
@roles_required(*SALES)
def get_opportunity(opportunity_id):
    """An opportunity with its stage history and the next step (complete it via /tasks/{id}/complete)."""
    return _detail(opportunities.get_opportunity(opportunity_id, current_principal()))


@blp.route("/accounts", methods=["GET"])
@blp.response(200, AccountSummarySchema(many=True))
@roles_required(*SALES)
def list_accounts():
    """Accounts (with contacts and last activity) of the deals I may see."""
    return accounts.list_accounts(current_principal())


@blp.route("/contracts", methods=["GET"])
@blp.response(200, ContractSchema(many=True))
@roles_required(*SALES)
def list_contracts():
    """Contracts of the deals I may see."""
    return opportunities.list_contracts(current_principal())


@blp.route("/products", methods=["GET"])
@blp.response(200, ProductSchema(many=True))
@roles_required(*SALES)
def list_products():
    """The price list."""
    return db.session.scalars(db.select(Product).order_by(Product.sku)).all()


@blp.route("/quotes", methods=["POST"])
@blp.arguments(QuoteInputSchema)
@blp.response(201, QuoteSchema)
@roles_required(*SALES)
def create_quote(body):
    """Price a quote from the price list with a discount (approval is decided when it is submitted)."""
    with transaction():
        return quotes.create_quote(body["opportunity_id"], body["lines"], body["discount_percent"],
                                   current_principal())


@blp.route("/quotes/<int:quote_id>/send", methods=["POST"])
@blp.response(200, QuoteSchema)
@roles_required(*SALES)
def send_quote(quote_id):
    """Send the quote to the customer: 409 until its discount is approved."""
    with transaction():
        return quotes.send_quote(quote_id, current_principal())


@blp.route("/reports/funnel", methods=["GET"])
@blp.arguments(FunnelQuerySchema, location="query")
@blp.response(200, FunnelSchema)
@roles_required(*SALES)
def funnel(query):
    """Per stage count, value, conversion and days in stage; lost reasons; weighted forecast."""
    return funnel_report.funnel(current_principal(), team_id=query["team_id"], owner_id=query["owner_id"],
                                since=query["since"], until=query["until"])
