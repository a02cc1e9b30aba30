"""Sales pages: leads (own, team, pool) with filters, the pipeline board by stage, an
opportunity with its next step and the quote builder whose "request discount" submits the quote
to the approval rules, the funnel — and the approver's phone-first inbox and history."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select

from ..auth.access import client_label, current_principal, roles_required
from ..db import transaction
from ..errors import AppError, ValidationFailed
from ..extensions import db
from ..processes import tasks
from ..web.layout import problem_for_page
from . import approvals, funnel, leads, opportunities, quotes
from .models import STAGES, Product
from .schemas import FunnelQuerySchema

pages = Blueprint("sales_pages", __name__)

SALES = ("sales_rep", "sales_manager", "director", "finance", "admin")
APPROVERS = ("sales_manager", "director", "finance", "admin")
LEAD_STATUSES = ("new", "assigned", "contacted", "qualified", "disqualified", "pool", "converted")
QUOTE_ROWS = 3


@pages.route("/sales/leads")
@roles_required(*SALES)
def lead_list():
    """Leads I may see, filtered by status; ``pool=1`` shows the pool waiting for a rep."""
    pool = request.args.get("pool") == "1"
    status = request.args.get("status") or None
    rows = leads.list_leads(current_principal(), status=None if pool else status, pool=pool, limit=200)
    return render_template("sales/leads.html", leads=rows, pool=pool, status=status, statuses=LEAD_STATUSES,
                           next_step=opportunities.next_step)


@pages.route("/sales/pipeline")
@roles_required(*SALES)
def pipeline():
    """Open opportunities as a board by stage, with value and days in stage."""
    rows = opportunities.list_opportunities(current_principal(), limit=500)
    columns = {stage: [o for o in rows if o.stage == stage] for stage in STAGES}
    return render_template("sales/pipeline.html", columns=columns)


def _quote_lines(form) -> list[dict]:
    lines = []
    for n in range(QUOTE_ROWS):
        product, quantity = form.get(f"product_{n}"), form.get(f"quantity_{n}") or "1"
        if not product:
            continue
        if not quantity.isdigit() or int(quantity) < 1:
            raise ValidationFailed("each quantity must be a whole number of at least 1",
                                   errors=[{"field": f"lines[{n}].quantity", "message": "at least 1"}])
        lines.append({"product_id": int(product), "quantity": int(quantity)})
    if not lines:
        raise ValidationFailed("a quote needs at least one product",
                               errors=[{"field": "lines", "message": "choose a product"}])
    return lines


def _discount(form) -> Decimal:
    try:
        return Decimal(form.get("discount_percent") or "0")
    except InvalidOperation:
        raise ValidationFailed("the discount must be a number",
                               errors=[{"field": "discount_percent", "message": "a number from 0 to 100"}]) from None


@pages.route("/sales/opportunities/<int:opportunity_id>", methods=["GET", "POST"])
@roles_required(*SALES)
def opportunity_page(opportunity_id, problem=None, status=200):
    """An opportunity: stage history, next step, quotes; at the quote step, build a quote and submit it
    ("request discount": the approval rules decide who must approve it)."""
    user = current_principal()
    opp = opportunities.get_opportunity(opportunity_id, user)
    step = opportunities.next_step(opp.instance_id)
    if request.method == "POST":
        try:
            if step is None or step.element_id != "prepare_quote":
                raise ValidationFailed("this deal is not at the quote step")
            with transaction():
                quote = quotes.create_quote(opp.id, _quote_lines(request.form), _discount(request.form), user)
                tasks.complete_task(step.id, {"quote_id": quote.id}, user, client=client_label())
            return redirect(url_for("sales_pages.opportunity_page", opportunity_id=opp.id,
                                    done=f"quote {quote.id} submitted"))
        except AppError as err:
            problem, status = problem_for_page(err), err.status
            step = opportunities.next_step(opp.instance_id)
    quote_rows = [(q, quotes.quote_totals(q)) for q in quotes.quotes_of(opp.id)]
    products = db.session.scalars(select(Product).order_by(Product.product_line, Product.sku)).all()
    return render_template("sales/opportunity.html", opp=opp, step=step, quotes=quote_rows, products=products,
                           history=opportunities.stage_history(opp.id), rows=range(QUOTE_ROWS), problem=problem,
                           form=request.form), status


@pages.route("/sales/quotes/<int:quote_id>/send", methods=["POST"])
@roles_required(*SALES)
def send_quote_page(quote_id):
    """Send an approved quote (409 before approval, shown on the opportunity page)."""
    try:
        with transaction():
            quote = quotes.send_quote(quote_id, current_principal())
    except AppError as err:
        opportunity_id = request.form.get("opportunity_id", type=int) or 0
        return opportunity_page(opportunity_id, problem=problem_for_page(err), status=err.status)
    return redirect(url_for("sales_pages.opportunity_page", opportunity_id=quote.opportunity_id,
                            done=f"quote {quote.id} sent"))


@pages.route("/sales/funnel", methods=["GET"])
@roles_required(*SALES)
def funnel_page():
    """The funnel as a page: stage bars, conversion, days in stage, lost reasons, forecast."""
    query = FunnelQuerySchema().load(request.args)
    report = funnel.funnel(current_principal(), team_id=query["team_id"], owner_id=query["owner_id"],
                           since=query["since"], until=query["until"])
    top = max([row["reached"] for row in report["stages"]] or [1]) or 1
    return render_template("sales/funnel.html", report=report, top=top)


# -- the approver's pages (phone first) ---------------------------------------------------------
def _approvals_page(problem=None, status=200, error_task=None):
    user = current_principal()
    items = [approvals.approval_context(task) for task in approvals.pending_approvals(user)]
    return render_template("sales/approvals.html", items=items, problem=problem, error_task=error_task,
                           delegates=approvals.possible_delegates(user)), status


@pages.route("/approvals", methods=["GET"])
@roles_required(*APPROVERS)
def approvals_page():
    """Pending discount approvals with their deal context."""
    return _approvals_page()


@pages.route("/approvals/<int:task_id>", methods=["POST"])
@roles_required(*APPROVERS)
def decide_page(task_id):
    """Approve, reject (with a reason) or delegate from the page."""
    user = current_principal()
    action = request.form.get("action") or ""
    try:
        with transaction():
            if action == "delegate":
                approvals.delegate_approval(task_id, user, request.form.get("delegate_id", type=int) or 0,
                                            client=client_label())
            else:
                approvals.decide_approval(task_id, user, action, request.form.get("reason") or None,
                                          client=client_label())
    except AppError as err:
        return _approvals_page(problem_for_page(err), err.status, error_task=task_id)
    return redirect(url_for("sales_pages.approvals_page", done=action))


@pages.route("/approvals/history", methods=["GET"])
@roles_required(*APPROVERS)
def approval_history():
    """The decisions I took (approve / reject / delegate), newest first."""
    return render_template("sales/approval_history.html",
                           decisions=approvals.decisions_by(current_principal(), limit=100))
