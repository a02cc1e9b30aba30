"""After-sales pages: the dispatcher's and service manager's desk (intake, open requests with live
SLA clocks, a request with its dispatch override, engineers with status, load and a map of their
positions, follow-ups, the service report) and the public pages a customer opens from a QR code
(no login; the signed token in the link is the permission)."""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from ..auth.access import client_label, current_principal, public, roles_required
from ..db import transaction
from ..errors import AppError, NotFound, ValidationFailed
from ..extensions import db
from ..security.ratelimit import public_limit, too_many_requests
from ..web.layout import problem_for_page
from . import engineers, offers, rating, reports, service_requests, sla, tokens
from .models import PRIORITIES, Asset, Engineer
from .schemas import ReportQuerySchema

pages = Blueprint("aftersales_pages", __name__)

DESK = ("dispatcher", "service_manager", "admin")
PHOTO_TYPES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"RIFF": ".webp"}
# Engineer status → colour, for the map's circles and the legend beside it alike.
STATUS_COLOURS = {"available": "#146c2e", "break": "#b26b00", "off": "#6b7280"}


# -- desk pages (session login) -------------------------------------------------------------
@pages.route("/desk/service", methods=["GET", "POST"])
@roles_required(*DESK)
def desk_page():
    """The dispatcher's intake form and the open requests with their live SLA clocks."""
    problem, form, status = None, {}, 200
    if request.method == "POST":
        form = request.form
        try:
            with transaction():
                req, _created = service_requests.report_fault(
                    int(form.get("asset_id") or 0), form.get("description", ""), source="dispatcher",
                    priority=form.get("priority", "normal"), reporter_name=form.get("reporter_name") or None,
                    reporter_phone=form.get("reporter_phone") or None, actor=current_principal(),
                    client=client_label())
            return redirect(url_for("aftersales_pages.desk_page", created=req.id))
        except AppError as err:
            problem, status = problem_for_page(err), err.status
            if not problem["fields"]:
                problem["fields"] = {"asset_id": err.detail}
    requests = service_requests.list_requests(open_only=True, limit=200)
    assets = db.session.scalars(select(Asset).order_by(Asset.id).limit(500)).all()
    return render_template("desk/service.html", requests=requests, assets=assets, sla=sla.sla_state,
                           problem=problem, form=form, created=request.args.get("created"),
                           priorities=PRIORITIES, follow_ups=service_requests.desk_follow_ups()), status


@pages.route("/desk/requests/<int:request_id>", methods=["GET", "POST"])
@roles_required(*DESK)
def request_page(request_id):
    """A request: SLA clocks, status log, the engineer; the dispatcher may override the dispatch here."""
    problem, status = None, 200
    if request.method == "POST":
        try:
            engineer_id = request.form.get("engineer_id", type=int)
            if not engineer_id:
                raise ValidationFailed("choose an engineer", errors=[{"field": "engineer_id", "message": "required"}])
            with transaction():
                offers.override_dispatch(request_id, engineer_id, current_principal(), client=client_label())
            return redirect(url_for("aftersales_pages.request_page", request_id=request_id, done="dispatched"))
        except AppError as err:
            problem, status = problem_for_page(err), err.status
    req = service_requests.get_request(request_id)
    engineer_rows = db.session.scalars(select(Engineer).order_by(Engineer.status, Engineer.name)).all()
    return render_template("desk/request.html", req=req, sla=sla.sla_state(req),
                           events=service_requests.events_of(req.id),
                           engineers=engineer_rows, problem=problem), status


def _engineer_map(rows: list[Engineer]) -> dict:
    """The map's spec for map.js: a circle per engineer coloured like the legend, and either the
    configured tiles or the region's outline (static GeoJSON)."""
    config = current_app.config
    markers = [{"lat": p["lat"], "lon": p["lon"], "status": p["engineer"].status, "live": p["live"],
                "title": " · ".join([p["engineer"].name, _(p["engineer"].status),
                                     _("%(n)s open jobs", n=p["engineer"].open_jobs),
                                     _("now") if p["live"] else _("home base")])}
               for p in engineers.engineer_positions(rows)]
    tiles = {"url": config["MAP_TILE_URL"], "attribution": config["MAP_TILE_ATTRIBUTION"]} \
        if config["MAP_TILE_URL"] else None
    return {"markers": markers, "colours": STATUS_COLOURS, "tiles": tiles,
            "outline": url_for("static", filename=config["MAP_OUTLINE"])}


@pages.route("/desk/engineers")
@roles_required(*DESK)
def engineers_page():
    """Engineers with status, open jobs and last position, and a map of where they are."""
    rows = db.session.scalars(select(Engineer).order_by(Engineer.name)).all()
    return render_template("desk/engineers.html", engineers=rows, map_spec=_engineer_map(rows), colours=STATUS_COLOURS)


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
    """A customer page for a refused request (a 429 says when to come back in ``Retry-After``)."""
    headers = {"Retry-After": str(err.extra["retry_after"])} if "retry_after" in err.extra else {}
    return render_template(template, title=err.title, message=err.detail), err.status, headers


def _page_breach(breached):
    """The customer page for a spent rate limit (instead of the staff pages' error page)."""
    return current_app.make_response(_page_error(too_many_requests(breached)))


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
@public_limit("RATE_QR_REPORT", on_breach=_page_breach)
@public
def report_page(token):
    """The fault-report page a customer opens from the QR code on a machine."""
    try:
        asset = service_requests.asset_for_token(token)
    except AppError as err:
        return _page_error(err)
    if request.method == "GET":
        return render_template("public/report.html", asset=asset, token=token, errors={}, form={})
    form = request.form
    if form.get("website"):  # a honeypot field people never see: bots fill it in
        return render_template("public/message.html", title=_("Thank you"), message=_("Your report was received.")), 200
    try:
        with transaction():
            req, created = service_requests.report_fault(
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
        req = service_requests.get_request(int(payload.get("r", 0)))
    except (AppError, ValueError) as err:
        return _page_error(err if isinstance(err, AppError) else NotFound("no such request"))
    return render_template("public/status.html", req=req, sla=sla.sla_state(req),
                           events=service_requests.events_of(req.id))


@pages.route("/rate/<token>", methods=["GET", "POST"])
@public_limit("RATE_QR_RATING", on_breach=_page_breach)
@public
def rate_page(token):
    """The rating page a customer opens from the QR code on the job sheet (works once)."""
    try:
        req = rating.request_for_rating_token(token)
    except AppError as err:
        return _page_error(err)
    if request.method == "GET":
        return render_template("public/rate.html", req=req, token=token, error=None)
    try:
        stars = int(request.form.get("stars", "0"))
    except ValueError:
        stars = 0
    try:
        with transaction():
            rating.rate_job(token, stars, request.form.get("comment"), client=client_label())
    except ValidationFailed as err:
        return render_template("public/rate.html", req=req, token=token, error=err.detail), 422
    except AppError as err:
        return _page_error(err)
    return render_template("public/message.html", title=_("Thank you"),
                           message=_("Thank you for rating the visit.")), 201
