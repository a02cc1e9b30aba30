"""The composition root: ``create_app`` builds the Flask app, binds extensions,
registers blueprints and error handlers, and enforces deny-by-default access."""

from __future__ import annotations

import contextlib
import http
from pathlib import Path

from flask import Flask, request
from flask_smorest import Api
from werkzeug.exceptions import ClientDisconnected
from werkzeug.routing import IntegerConverter

from mobile_api import approvals as mobile_approvals
from mobile_api import engineers as mobile_engineers

from . import health
from .aftersales import offers, payment, rating, sla, visits
from .aftersales import pages as aftersales_pages
from .aftersales import routes as aftersales_routes
from .auth import routes as auth_routes
from .auth.access import ACCESS_ATTR, current_principal
from .auth.models import User
from .commands import register_commands
from .config import load_config
from .errors import PermissionDenied, register_error_handlers
from .extensions import db, login_manager, migrate
from .jobs import pages as ops_pages
from .observability import configure_logging, init_request_tracking, register_metrics_route
from .processes import builtin_services
from .processes import pages as process_pages
from .processes import routes as process_routes
from .sales import accounts, approvals, leads, opportunities, quotes
from .sales import pages as sales_pages
from .sales import routes as sales_routes
from .security.csp import content_security_policy
from .security.json_depth import init_json_depth_limit
from .security.ratelimit import init_rate_limits
from .web import init_web

# Domain modules holding functions that BPMN service tasks call by name (``register_service`` runs
# when they are imported).
BPMN_SERVICE_MODULES = (offers, payment, rating, sla, visits, builtin_services, accounts, approvals, leads,
                        opportunities, quotes)

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")


PROBLEM_SCHEMA = {
    "type": "object", "required": ["type", "title", "status", "detail"], "additionalProperties": True,
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "additionalProperties": True, "properties": {
            "field": {"type": "string", "nullable": True}, "message": {"type": "string"},
            "element_id": {"type": "string", "nullable": True}, "line": {"type": "integer", "nullable": True},
            "file": {"type": "string", "nullable": True}}}},
    },
}


class DatabaseId(IntegerConverter):
    """``<int:…>`` in our URLs: an id that fits our id columns (PostgreSQL ``integer``); larger is 404."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, *args, **{"max": 2**31 - 1, **kwargs})


class FlowdeskApi(Api):
    """flask-smorest Api whose errors go through our single problem+json handler, and are described
    as what they are: RFC 7807 ``application/problem+json``."""

    def _register_error_handlers(self):
        pass

    def _register_responses(self):
        self.spec.components.schema("Problem", PROBLEM_SCHEMA)
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["content"] = problem
            self.spec.components.response(status.name, response, lazy=True)
        self.spec.components.response("DEFAULT_ERROR", {"description": "A problem (RFC 7807)", "content": problem},
                                      lazy=True)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app from the environment (overridden by ``test_config``)."""
    app = Flask(__name__)
    app.url_map.converters["int"] = DatabaseId  # before any route is added: ids past the column are 404
    app.config.update(load_config())
    if test_config:
        app.config.update(test_config)
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    content_security_policy(app.config["MAP_TILE_URL"])  # a malformed tile URL stops the start, not a request

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth_pages.login_page"

    @login_manager.user_loader
    def _load_user(user_id: str):
        user = db.session.get(User, int(user_id))
        return user if user is not None and user.active else None

    api = FlowdeskApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]})
    api.register_blueprint(auth_routes.blp)
    api.register_blueprint(process_routes.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(aftersales_routes.blp)
    api.register_blueprint(mobile_engineers.blp)
    api.register_blueprint(sales_routes.blp)
    api.register_blueprint(mobile_approvals.blp)
    app.register_blueprint(auth_routes.pages)
    app.register_blueprint(aftersales_pages.pages)
    app.register_blueprint(sales_pages.pages)
    app.register_blueprint(process_pages.pages)
    app.register_blueprint(ops_pages.pages)
    register_error_handlers(app)
    init_request_tracking(app)
    register_metrics_route(app)
    _enforce_access(app)
    init_json_depth_limit(app)  # after the access check, before anything parses a body
    _read_unread_bodies(app)
    init_rate_limits(app)
    init_web(app)  # after the access check: its CSRF check must not answer anonymous callers first
    register_commands(app)
    return app


def _enforce_access(app: Flask) -> None:
    """Refuse any view that is not explicitly marked public or role-checked."""
    open_endpoints = {"static", "api-docs.openapi_json"}

    @app.before_request
    def _deny_unmarked():
        # Authorise before anything reads the body: a caller without the role gets 401/403, never a
        # 422 that would tell them about the endpoint's schema.
        if request.endpoint is None or request.endpoint in open_endpoints:
            return None
        view = app.view_functions.get(request.endpoint)
        rule = getattr(view, ACCESS_ATTR, None) if view is not None else "public"
        if rule is None:
            raise PermissionDenied("this route has no access rule")
        if rule != "public":
            user = current_principal()
            if rule != "authenticated" and not user.has_role(*rule):
                raise PermissionDenied(f"this needs one of the roles: {', '.join(rule)}")
        return None

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")  # QR links carry their token in the URL
        response.headers.setdefault("Content-Security-Policy", content_security_policy(app.config["MAP_TILE_URL"]))
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")  # tokens and per-user data: never cached
        if app.config.get("SESSION_COOKIE_SECURE"):  # served over TLS: browsers must keep to it
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response


def _read_unread_bodies(app: Flask) -> None:
    """Read to its end any request body the answer did not need (a 401 for an upload, say).

    Before it reuses a keep-alive connection gunicorn reads at most 64 kB of a body left unread, and
    beyond that closes the connection, after the answer announced keep-alive: the client's next request
    on it then fails. Bodies within the upload limit are cheap to read here; a larger one is answered
    413 with ``Connection: close`` (``pre_request`` in server/gunicorn_conf.py)."""

    @app.after_request
    def _read_the_rest(response):
        length = request.content_length
        if length and length <= (app.config["MAX_CONTENT_LENGTH"] or length):
            with contextlib.suppress(OSError, ClientDisconnected):  # the client went away: nothing to keep
                while request.stream.read(65536):
                    pass
        return response
