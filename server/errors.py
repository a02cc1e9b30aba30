"""Our own error types, the one table mapping them to HTTP status, and the
app-level handler writing ``application/problem+json`` (API) or a small HTML
page (browsers). Unknown errors give a generic 500; the traceback is logged,
never shown."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, redirect, render_template, render_template_string, request, url_for
from marshmallow import ValidationError as MarshmallowValidationError
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from .db import is_concurrency_failure
from .engine import BpmnValidationError

log = logging.getLogger(__name__)


class AppError(Exception):
    """Base of every error a service may raise on purpose."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(AppError):
    """A row the caller named does not exist (or is not visible to them)."""

    status, title = 404, "Not found"


class Unauthorized(AppError):
    """No valid credentials."""

    status, title = 401, "Authentication required"


class PermissionDenied(AppError):
    """Authenticated, but the role does not allow this."""

    status, title = 403, "Permission denied"


class Conflict(AppError):
    """Stale write or a state that forbids the action."""

    status, title = 409, "Conflict"


class ValidationFailed(AppError):
    """Input breaks a schema or rule; ``errors`` lists each failing field."""

    status, title = 422, "Validation failed"

    def __init__(self, detail: str, errors: list[dict] | None = None, **extra):
        super().__init__(detail, errors=errors or [], **extra)


class Gone(AppError):
    """A link that was valid once: expired or already used."""

    status, title = 410, "Link no longer valid"


class TooManyRequests(AppError):
    """Rate limit hit."""

    status, title = 429, "Too many requests"


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


_HTML = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{ title }}</title>
<main style="font-family:system-ui;max-width:40rem;margin:3rem auto;padding:0 1rem">
<h1>{{ title }}</h1><p>{{ detail }}</p>
{% for e in errors %}<p><strong>{{ e.field or e.element_id or '' }}</strong> {{ e.message }}</p>{% endfor %}
</main></html>"""


def problem(status: int, title: str, detail: str, **extra):
    """Build a problem+json (or HTML) response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": request.path}
    body.update({k: v for k, v in extra.items() if v is not None})
    if _wants_json():
        response = jsonify(body)
        response.status_code = status
        response.mimetype = "application/problem+json"
        return response
    if status == 401 and request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
        # a browser on a page needing a session: sign in, then come back
        return redirect(url_for("auth_pages.login_page", next=request.full_path.rstrip("?")))
    problem_view = {"title": title, "detail": detail, "list": body.get("errors", []), "fields": {}}
    try:
        html = render_template("web/error.html", problem=problem_view, status=status)
    except Exception:  # noqa: BLE001 - the page layout needs the database; never fail the error page
        html = render_template_string(_HTML, title=title, detail=detail, errors=body.get("errors", []))
    return html, status, {"Content-Type": "text/html; charset=utf-8"}


def _marshmallow_errors(messages, prefix: str = "") -> list[dict]:
    out = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.extend(_marshmallow_errors(value, path))
            else:
                for message in value if isinstance(value, list) else [value]:
                    out.append({"field": path, "message": str(message)})
    else:
        for message in messages if isinstance(messages, list) else [messages]:
            out.append({"field": prefix or None, "message": str(message)})
    return out


def app_error_response(err: AppError):
    """The problem response for one of our errors (a 429 says when to come back in ``Retry-After``)."""
    response = problem(err.status, err.title, err.detail, **err.extra)
    if "retry_after" in err.extra:
        response = current_app.make_response(response)
        response.headers["Retry-After"] = str(err.extra["retry_after"])
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the single handler family for our errors, HTTP errors and the unknown."""
    app.register_error_handler(AppError, app_error_response)

    @app.errorhandler(BpmnValidationError)
    def _bpmn_error(err: BpmnValidationError):
        where = err.to_dict()
        return problem(422, "Invalid BPMN", _bpmn_detail(err), errors=[where], **where)

    @app.errorhandler(MarshmallowValidationError)
    def _schema_error(err: MarshmallowValidationError):
        return problem(422, "Validation failed", "The request body does not match its schema.",
                       errors=_marshmallow_errors(err.messages))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if err.response is not None:  # made for this error already (a rate limit's 429 page)
            return err.response
        data = getattr(err, "data", None) or {}
        if err.code == 422 and "messages" in data:
            # webargs/flask-smorest parsing errors: {"json": {"field": [...]}}
            messages = data["messages"]
            flat = {}
            for location_errors in messages.values():
                flat.update(location_errors if isinstance(location_errors, dict) else {"_": location_errors})
            return problem(422, "Validation failed", "The request does not match its schema.",
                           errors=_marshmallow_errors(flat))
        if err.code == 413:
            return problem(413, "Payload too large", "The request body is larger than the upload limit.")
        return problem(err.code or 500, err.name, err.description or err.name)

    @app.errorhandler(OverflowError)
    @app.errorhandler(DataError)
    @app.errorhandler(UnicodeEncodeError)
    def _out_of_range(err: Exception):
        # The database refused a value from the request (a number past its column, text it cannot store):
        # the caller's input, so a 422 — without the driver's words.
        log.info("value refused by the database on %s %s: %s", request.method, request.path, type(err).__name__)
        return problem(422, "Validation failed",
                       "a value in the request is out of range, too long, or not valid text for storage")

    @app.errorhandler(Exception)
    def _unknown(err: Exception):
        if is_concurrency_failure(err):  # a deadlock the lock order does not cover (several instances at once)
            log.warning("concurrency failure on %s %s: %s", request.method, request.path, err.orig)
            return problem(409, "Conflict", "Someone changed this at the same moment; please try again.")
        if current_app.testing and not current_app.config.get("HIDE_INTERNAL_ERRORS"):
            raise err
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "Something went wrong on our side; it has been logged.")


def _bpmn_detail(err) -> str:
    parts = [err.message]
    where = ", ".join(f"{k} {v}" for k, v in (("file", err.file_name), ("element", err.element_id),
                                              ("line", err.line)) if v)
    return f"{parts[0]} ({where})" if where else parts[0]
