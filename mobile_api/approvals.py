"""Approvers on the phone: ``/api/mobile/v1/approvals`` — pending discount
approvals with the deal context, approve, reject (reason required), delegate.
Every decision goes through the process and lands in the audit trail with
who, when, what and the calling client."""

from __future__ import annotations

from flask_smorest import Blueprint

from server.auth.access import client_label, current_principal, roles_required
from server.sales import approvals as discount_approvals
from server.sales.schemas import ApprovalSchema, DecisionSchema, DelegateSchema

from .idempotency import idempotent

blp = Blueprint("mobile_approvals", __name__, url_prefix="/api/mobile/v1",
                description="Discount approvals for approvers (send Idempotency-Key on every POST)")
APPROVERS = ("sales_manager", "director", "finance", "admin")
_approval = ApprovalSchema()


@blp.route("/approvals", methods=["GET"])
@blp.response(200, ApprovalSchema(many=True))
@roles_required(*APPROVERS)
def approvals():
    """What waits for my decision."""
    pending = discount_approvals.pending_approvals(current_principal())
    return [discount_approvals.approval_context(task) for task in pending]


@blp.route("/approvals/<int:task_id>", methods=["GET"])
@blp.response(200, ApprovalSchema)
@roles_required(*APPROVERS)
def approval(task_id):
    """One approval with account, lines, margin and history."""
    return discount_approvals.approval_context(discount_approvals.approval_task(task_id, current_principal()))


@blp.route("/approvals/<int:task_id>/approve", methods=["POST"])
@blp.arguments(DecisionSchema)
@blp.response(200, ApprovalSchema)
@roles_required(*APPROVERS)
@idempotent
def approve(body, task_id):
    """Approve at my level (the next level, if any, gets it next)."""
    return _approval.dump(discount_approvals.decide_approval(task_id, current_principal(), "approve", body["reason"],
                                                             client=client_label())), 200


@blp.route("/approvals/<int:task_id>/reject", methods=["POST"])
@blp.arguments(DecisionSchema)
@blp.response(200, ApprovalSchema)
@roles_required(*APPROVERS)
@idempotent
def reject(body, task_id):
    """Reject; a reason is required (422 without)."""
    return _approval.dump(discount_approvals.decide_approval(task_id, current_principal(), "reject", body["reason"],
                                                             client=client_label())), 200


@blp.route("/approvals/<int:task_id>/delegate", methods=["POST"])
@blp.arguments(DelegateSchema)
@blp.response(200, ApprovalSchema)
@roles_required(*APPROVERS)
@idempotent
def delegate(body, task_id):
    """Hand it to a colleague with the same or higher authority (422 otherwise)."""
    task = discount_approvals.delegate_approval(task_id, current_principal(), body["delegate_id"],
                                                client=client_label())
    return _approval.dump(discount_approvals.approval_context(task)), 200
