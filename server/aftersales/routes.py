"""After-sales HTTP: the dispatcher's and service manager's API under /api/v1,
and the public pages a customer opens from a QR code (no login; the signed
token in the link is the permission)."""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint as FlaskBlueprint
from flask import current_app, redirect, render_template, request, url_for
from flask_smorest import Blueprint
from sqlalchemy import select

from ..auth.access import client_label, current_principal, public, roles_required
from ..auth.routes import csrf_ok, csrf_token
from ..db import transaction
from ..errors import AppError, NotFound, ValidationFailed
from ..extensions import db
from ..security.ratelimit import limit
from . import reports, services, tokens
from .models import PRIORITIES, Asset, Engineer
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
pages = FlaskBlueprint("aftersales_pages", __name__, template_folder="../templates")

DESK = ("dispatcher", "service_manager", "admin")
PHOTO_TYPES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"RIFF": ".webp"}


@blp.route("/service-requests", methods=["POST"])
@blp.arguments(ServiceRequestInputSchema)
@blp.response(201, ServiceRequestSchema)
@roles_required(*DESK)
def create_request(body):
    """Open a service request for an asset (dispatcher form or API); its process starts at once."""
    with transaction():
        req, _ = services.report_fault(body["asset_id"], body["description"], source="dispatcher",
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
    return services.list_requests(status=query["status"], open_only=query["open"], engineer_id=query["engineer_id"],
                                  limit=query["limit"], after_id=query["cursor"])


@blp.route("/service-requests/<int:request_id>", methods=["GET"])
@blp.response(200, ServiceRequestDetailSchema)
@roles_required(*DESK)
def get_request(request_id):
    """A request with its asset, engineer, status log, parts and the asset's history."""
    return services.request_detail(services.get_request(request_id))


@blp.route("/service-requests/<int:request_id>/dispatch", methods=["POST"])
@blp.arguments(DispatchOverrideSchema)
@blp.response(200, ServiceRequestSchema)
@roles_required(*DESK)
def override_dispatch(body, request_id):
    """Send the job to a named engineer instead of the automatic choice (before it is accepted)."""
    with transaction():
        return services.override_dispatch(request_id, body["engineer_id"], current_principal(),
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
    return services.get_asset(asset_id)


@blp.route("/assets/<int:asset_id>/qr", methods=["GET"])
@blp.response(200, AssetQrSchema)
@roles_required(*DESK)
def asset_qr(asset_id):
    """The fault-report link printed on the asset, with its QR code as SVG."""
    asset = services.get_asset(asset_id)
    url = tokens.public_url(f"/report/{services.asset_report_token(asset)}")
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


# -- desk pages (session login) -------------------------------------------------------------
@pages.route("/desk/service", methods=["GET", "POST"])
@roles_required(*DESK)
def desk_page():
    """The dispatcher's intake form and the open requests with their SLA clocks."""
    errors, form, status = {}, {}, 200
    if request.method == "POST":
        form = request.form
        try:
            if not csrf_ok():
                raise ValidationFailed("your form expired; please try again",
                                       errors=[{"field": "form", "message": "expired, reload the page"}])
            with transaction():
                req, _ = services.report_fault(int(form.get("asset_id") or 0), form.get("description", ""),
                                               source="dispatcher", priority=form.get("priority", "normal"),
                                               reporter_name=form.get("reporter_name") or None,
                                               reporter_phone=form.get("reporter_phone") or None,
                                               actor=current_principal(), client=client_label())
            return redirect(url_for("aftersales_pages.desk_page", created=req.id))
        except (ValidationFailed, NotFound) as err:
            errors = {e["field"]: e["message"] for e in err.extra.get("errors", [])} or {"asset_id": err.detail}
            status = err.status
    requests = services.list_requests(open_only=True, limit=200)
    assets = db.session.scalars(select(Asset).order_by(Asset.id).limit(500)).all()
    return render_template("desk/service.html", requests=requests, assets=assets, sla=services.sla_state,
                           errors=errors, form=form, csrf=csrf_token(), created=request.args.get("created"),
                           priorities=PRIORITIES), status


@pages.route("/desk/service/report", methods=["GET"])
@roles_required(*DESK)
def report_view():
    """The service report as a page: SLA compliance, first-time fix, times, engineers, failures by model."""
    query = ReportQuerySchema().load(request.args)
    report = reports.service_report(query["since"], query["until"])
    top = max([row["requests"] for row in report["failures_by_model"]] or [1])
    return render_template("desk/report.html", report=report, top=top)


# -- public pages (from QR codes) ---------------------------------------------------------
def _page_error(err: AppError, template: str = "public/message.html"):
    return render_template(template, title=err.title, message=err.detail), err.status


def _save_photo(upload) -> str | None:
    """Store an optional photo (JPEG/PNG/WebP by content, not by name) under the data dir."""
    if upload is None or not upload.filename:
        return None
    data = upload.read(5_000_001)
    kind = next((ext for magic, ext in PHOTO_TYPES.items() if data.startswith(magic)), None)
    if kind is None or len(data) > 5_000_000:
        raise ValidationFailed("the photo must be a JPEG, PNG or WebP image under 5 MB",
                               errors=[{"field": "photo", "message": "JPEG, PNG or WebP, at most 5 MB"}])
    folder = Path(current_app.config["DATA_DIR"]) / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(12) + kind
    (folder / name).write_bytes(data)
    return name


@pages.route("/report/<token>", methods=["GET", "POST"])
@public
def report_page(token):
    """The fault-report page a customer opens from the QR code on a machine."""
    try:
        asset = services.asset_for_token(token)
    except AppError as err:
        return _page_error(err)
    if request.method == "GET":
        return render_template("public/report.html", asset=asset, token=token, errors={}, form={})
    form = request.form
    try:
        limit("qr-report", per_minute=10)
    except AppError as err:
        return _page_error(err)
    if form.get("website"):  # a honeypot field people never see: bots fill it in
        return render_template("public/message.html", title="Thank you", message="Your report was received."), 200
    try:
        with transaction():
            req, created = services.report_fault(
                asset.id, form.get("description", ""), source="qr", reporter_name=form.get("name") or None,
                reporter_phone=form.get("phone") or None, photo_path=_save_photo(request.files.get("photo")),
                client=client_label())
    except ValidationFailed as err:
        errors = {e["field"]: e["message"] for e in err.extra.get("errors", [])}
        return render_template("public/report.html", asset=asset, token=token, errors=errors, form=form), 422
    status_token = tokens.sign(tokens.REQUEST_STATUS, {"r": req.id})
    return render_template("public/reported.html", req=req, created=created,
                           status_url=f"/status/{status_token}"), 201 if created else 200


@pages.route("/status/<token>", methods=["GET"])
@public
def status_page(token):
    """Where the customer follows their request."""
    try:
        payload = tokens.verify(tokens.REQUEST_STATUS, token, current_app.config["RATING_QR_DAYS"])
        req = services.get_request(int(payload.get("r", 0)))
    except (AppError, ValueError) as err:
        return _page_error(err if isinstance(err, AppError) else NotFound("no such request"))
    return render_template("public/status.html", req=req, sla=services.sla_state(req),
                           events=services.events_of(req.id))


@pages.route("/rate/<token>", methods=["GET", "POST"])
@public
def rate_page(token):
    """The rating page a customer opens from the QR code on the job sheet (works once)."""
    try:
        req = services.request_for_rating_token(token)
    except AppError as err:
        return _page_error(err)
    if request.method == "GET":
        return render_template("public/rate.html", req=req, token=token, error=None)
    try:
        limit("qr-rating", per_minute=10)
    except AppError as err:
        return _page_error(err)
    try:
        stars = int(request.form.get("stars", "0"))
    except ValueError:
        stars = 0
    try:
        with transaction():
            services.rate_job(token, stars, request.form.get("comment"), client=client_label())
    except ValidationFailed as err:
        return render_template("public/rate.html", req=req, token=token, error=err.detail), 422
    except AppError as err:
        return _page_error(err)
    return render_template("public/message.html", title="Thank you",
                           message="Thank you for rating the visit."), 201
