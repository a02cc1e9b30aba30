"""After-sales HTTP: the dispatcher's and service manager's API under /api/v1,
and the public pages a customer opens from a QR code (no login; the signed
token in the link is the permission)."""

from __future__ import annotations

from flask_smorest import Blueprint
from sqlalchemy import select

from ..auth.access import client_label, current_principal, roles_required
from ..db import transaction
from ..extensions import db
from . import offers, reports, service_requests, tokens
from .models import Asset, Engineer
from .schemas import (
    AssetQrSchema,
    AssetSchema,
    DispatchOverrideSchema,
    EngineerSchema,
    ReportQuerySchema,
    RequestListQuerySchema,
    ServiceReportSchema,
    ServiceRequestDetailSchema,
    ServiceRequestInputSchema,
    ServiceRequestSchema,
)

blp = Blueprint("aftersales", __name__, url_prefix="/api/v1", description="After-sales service and dispatch")

DESK = ("dispatcher", "service_manager", "admin")
PHOTO_TYPES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"RIFF": ".webp"}


@blp.route("/service-requests", methods=["POST"])
@blp.arguments(ServiceRequestInputSchema)
@blp.response(201, ServiceRequestSchema)
@roles_required(*DESK)
def create_request(body):
    """Open a service request for an asset (dispatcher form or API); its process starts at once."""
    with transaction():
        req, _ = service_requests.report_fault(body["asset_id"], body["description"], source="dispatcher",
                                               priority=body["priority"], reporter_name=body["reporter_name"],
                                               reporter_phone=body["reporter_phone"], actor=current_principal(),
                                               client=client_label())
    return req


@blp.route("/service-requests", methods=["GET"])
@blp.arguments(RequestListQuerySchema, location="query")
@blp.response(200, ServiceRequestSchema(many=True))
@roles_required(*DESK)
def list_requests(query):
    """Requests newest first, with their SLA clocks (filters: status, open; cursor: the last id seen)."""
    return service_requests.list_requests(status=query["status"], open_only=query["open"],
                                          engineer_id=query["engineer_id"], limit=query["limit"],
                                          after_id=query["cursor"])


@blp.route("/service-requests/<int:request_id>", methods=["GET"])
@blp.response(200, ServiceRequestDetailSchema)
@roles_required(*DESK)
def get_request(request_id):
    """A request with its asset, engineer, status log, parts and the asset's history."""
    return service_requests.request_detail(service_requests.get_request(request_id))


@blp.route("/service-requests/<int:request_id>/dispatch", methods=["POST"])
@blp.arguments(DispatchOverrideSchema)
@blp.response(200, ServiceRequestSchema)
@roles_required(*DESK)
def override_dispatch(body, request_id):
    """Send the job to a named engineer instead of the automatic choice (before it is accepted)."""
    with transaction():
        return offers.override_dispatch(request_id, body["engineer_id"], current_principal(),
                                        client=client_label())


@blp.route("/assets", methods=["GET"])
@blp.response(200, AssetSchema(many=True))
@roles_required(*DESK)
def list_assets():
    """All assets (first 500 by id)."""
    return db.session.scalars(select(Asset).order_by(Asset.id).limit(500)).all()


@blp.route("/assets/<int:asset_id>", methods=["GET"])
@blp.response(200, AssetSchema)
@roles_required(*DESK)
def get_asset(asset_id):
    """One asset."""
    return service_requests.get_asset(asset_id)


@blp.route("/assets/<int:asset_id>/qr", methods=["GET"])
@blp.response(200, AssetQrSchema)
@roles_required(*DESK)
def asset_qr(asset_id):
    """The fault-report link printed on the asset, with its QR code as SVG."""
    asset = service_requests.get_asset(asset_id)
    url = tokens.public_url(f"/report/{service_requests.asset_report_token(asset)}")
    return {"asset_id": asset.id, "url": url, "svg": tokens.qr_svg(url)}


@blp.route("/engineers", methods=["GET"])
@blp.response(200, EngineerSchema(many=True))
@roles_required(*DESK)
def list_engineers():
    """Engineers with status, load and last known position (first 1000 by id)."""
    return db.session.scalars(select(Engineer).order_by(Engineer.id).limit(1000)).all()


@blp.route("/reports/service", methods=["GET"])
@blp.arguments(ReportQuerySchema, location="query")
@blp.response(200, ServiceReportSchema)
@roles_required(*DESK)
def service_report(query):
    """SLA compliance, first-time fix, response and repair times, utilisation and ratings, failures by model."""
    return reports.service_report(query["since"], query["until"])
