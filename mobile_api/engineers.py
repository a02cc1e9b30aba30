"""The field engineers' mobile API, ``/api/mobile/v1``: login, profile and
position, work orders (offered, active, closed) with the asset's history,
accept/decline, status steps, parts, payment and completion.

Every POST honours ``Idempotency-Key``; lists use cursor pagination; an
engineer only ever sees work orders dispatched to them (others are 404)."""

from __future__ import annotations

from flask_smorest import Blueprint

from server.aftersales import engineers, offers, payment, rating, service_requests, visits, workorders
from server.aftersales import parts as stock
from server.aftersales.schemas import (
    CompleteJobSchema,
    DeclineSchema,
    EngineerSchema,
    EngineerStatusSchema,
    JobSheetSchema,
    PartActionSchema,
    PartPageSchema,
    PartReturnSchema,
    PartsQuerySchema,
    PartUsageSchema,
    PaymentInputSchema,
    PaymentSchema,
    PositionSchema,
    ServiceRequestDetailSchema,
    ServiceRequestSchema,
    StatusChangeSchema,
    WorkDoneSchema,
    WorkOrderPageSchema,
    WorkOrderQuerySchema,
)
from server.auth.access import client_label, current_principal, public, roles_required
from server.auth.routes import log_in, log_out, refresh_pair
from server.auth.schemas import RefreshRequestSchema, TokenRequestSchema, TokenSchema
from server.security.ratelimit import login_limited

from .idempotency import idempotent

blp = Blueprint("mobile_engineers", __name__, url_prefix="/api/mobile/v1",
                description="Field engineers' mobile API (send Idempotency-Key on every POST)")

ENGINEER = ("engineer",)
_order, _detail, _engineer = ServiceRequestSchema(), ServiceRequestDetailSchema(), EngineerSchema()


# -- session ---------------------------------------------------------------------------
@blp.route("/auth/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@login_limited
@public
def login(body):
    """Log in with username and password: an access token and a rotating refresh token."""
    return log_in(body)


@blp.route("/auth/refresh", methods=["POST"])
@blp.arguments(RefreshRequestSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@public
def refresh(body):
    """Trade the refresh token (single use) for a new pair."""
    return refresh_pair(body)


@blp.route("/auth/logout", methods=["POST"])
@blp.response(204)
@roles_required()
def logout():
    """Revoke this access token."""
    log_out()


# -- me ------------------------------------------------------------------------------------
@blp.route("/me", methods=["GET"])
@blp.response(200, EngineerSchema)
@roles_required(*ENGINEER)
def me():
    """My profile: skills, shift, status, last position, open jobs."""
    return engineers.engineer_of(current_principal())


@blp.route("/me/status", methods=["POST"])
@blp.arguments(EngineerStatusSchema)
@blp.response(200, EngineerSchema)
@roles_required(*ENGINEER)
@idempotent
def set_status(body):
    """Available, on a break, or off duty."""
    return _engineer.dump(engineers.set_engineer_status(current_principal(), body["status"])), 200


@blp.route("/me/position", methods=["POST"])
@blp.arguments(PositionSchema)
@blp.response(200, EngineerSchema)
@roles_required(*ENGINEER)
@idempotent
def ping(body):
    """Where I am (the phone sends this every minute or so)."""
    return _engineer.dump(engineers.ping_position(current_principal(), body["lat"], body["lon"], body["at"])), 200


# -- work orders ------------------------------------------------------------------------
@blp.route("/work-orders", methods=["GET"])
@blp.arguments(WorkOrderQuerySchema, location="query")
@blp.response(200, WorkOrderPageSchema)
@roles_required(*ENGINEER)
def work_orders(query):
    """My work orders: offered, open (offered or in progress) or closed; cursor pagination."""
    items = workorders.engineer_work_orders(current_principal(), scope=query["scope"], limit=query["limit"],
                                            after_id=query["cursor"])
    return {"items": items, "next_cursor": str(items[-1].id) if len(items) == query["limit"] else None}


@blp.route("/work-orders/<int:request_id>", methods=["GET"])
@blp.response(200, ServiceRequestDetailSchema)
@roles_required(*ENGINEER)
def work_order(request_id):
    """One of my work orders, with the asset's past requests, parts used and notes."""
    req, _ = workorders.work_order_for(request_id, current_principal())
    return service_requests.request_detail(req)


def _answer(req) -> tuple[dict, int]:
    return _detail.dump(service_requests.request_detail(req)), 200


@blp.route("/work-orders/<int:request_id>/accept", methods=["POST"])
@blp.response(200, ServiceRequestDetailSchema)
@roles_required(*ENGINEER)
@idempotent
def accept(request_id):
    """Accept the offered work order."""
    return _answer(offers.respond_to_offer(request_id, current_principal(), True, client=client_label()))


@blp.route("/work-orders/<int:request_id>/decline", methods=["POST"])
@blp.arguments(DeclineSchema)
@blp.response(200, ServiceRequestSchema)
@roles_required(*ENGINEER)
@idempotent
def decline(body, request_id):
    """Decline the offer (with a reason); it goes to the next engineer and never back to me."""
    req = offers.respond_to_offer(request_id, current_principal(), False, body["reason"], client=client_label())
    return _order.dump(req), 200


@blp.route("/work-orders/<int:request_id>/status", methods=["POST"])
@blp.arguments(StatusChangeSchema)
@blp.response(200, ServiceRequestDetailSchema)
@roles_required(*ENGINEER)
@idempotent
def change_status(body, request_id):
    """On my way (en_route) or arrived (on_site), with my position."""
    return _answer(visits.update_status(request_id, current_principal(), body["status"], body["lat"], body["lon"],
                                        client=client_label()))


@blp.route("/work-orders/<int:request_id>/work-done", methods=["POST"])
@blp.arguments(WorkDoneSchema)
@blp.response(200, ServiceRequestDetailSchema)
@roles_required(*ENGINEER)
@idempotent
def work_done(body, request_id):
    """The repair report: fixed or not (another visit), notes, labour minutes."""
    return _answer(visits.report_work_done(request_id, current_principal(), body["fixed"], body["notes"],
                                           body["labour_minutes"], client=client_label()))


@blp.route("/parts", methods=["GET"])
@blp.arguments(PartsQuerySchema, location="query")
@blp.response(200, PartPageSchema)
@roles_required(*ENGINEER)
def parts(query):
    """Search parts, with what is free in my van and in the warehouse."""
    items = stock.search_parts(current_principal(), query["q"], limit=query["limit"], after_id=query["cursor"])
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(items) == query["limit"] else None}


def _usage(usage) -> tuple[dict, int]:
    from server.extensions import db

    db.session.flush()  # the usage's id
    return PartUsageSchema().dump(usage), 201


@blp.route("/work-orders/<int:request_id>/parts/reserve", methods=["POST"])
@blp.arguments(PartActionSchema)
@blp.response(201, PartUsageSchema)
@roles_required(*ENGINEER)
@idempotent
def reserve(body, request_id):
    """Hold parts for this job (409 when not enough is free)."""
    return _usage(stock.reserve_part(request_id, current_principal(), body["part_id"], body["quantity"],
                                     body["source"]))


@blp.route("/work-orders/<int:request_id>/parts/consume", methods=["POST"])
@blp.arguments(PartActionSchema)
@blp.response(201, PartUsageSchema)
@roles_required(*ENGINEER)
@idempotent
def consume(body, request_id):
    """Record parts used (from my reservation, else from free stock; never below zero)."""
    return _usage(stock.consume_part(request_id, current_principal(), body["part_id"], body["quantity"],
                                     body["source"]))


@blp.route("/work-orders/<int:request_id>/parts/return", methods=["POST"])
@blp.arguments(PartReturnSchema)
@blp.response(201, PartUsageSchema)
@roles_required(*ENGINEER)
@idempotent
def give_back(body, request_id):
    """Release a reservation or return unused parts to where they came from."""
    return _usage(stock.return_part(request_id, current_principal(), body["usage_id"], body["quantity"]))


@blp.route("/work-orders/<int:request_id>/payment", methods=["POST"])
@blp.arguments(PaymentInputSchema)
@blp.response(201, PaymentSchema)
@roles_required(*ENGINEER)
@idempotent
def pay(body, request_id):
    """Record the payment (amount must equal what is due; card/transfer need a reference)."""
    paid = payment.record_payment(request_id, current_principal(), body["method"], body["amount"],
                                  body["reference"], client=client_label())
    return PaymentSchema().dump(paid), 201


@blp.route("/work-orders/<int:request_id>/complete", methods=["POST"])
@blp.arguments(CompleteJobSchema)
@blp.response(200, JobSheetSchema)
@roles_required(*ENGINEER)
@idempotent
def complete(body, request_id):
    """Complete the job: returns the job sheet with the customer's rating link and QR code."""
    return JobSheetSchema().dump(visits.complete_job(request_id, current_principal(), body["summary"],
                                                     client=client_label())), 200


@blp.route("/work-orders/<int:request_id>/job-sheet", methods=["GET"])
@blp.response(200, JobSheetSchema)
@roles_required(*ENGINEER)
def job_sheet(request_id):
    """The job sheet (rating link once the job is closed)."""
    req, _ = workorders.work_order_for(request_id, current_principal())
    return rating.job_sheet(req)
