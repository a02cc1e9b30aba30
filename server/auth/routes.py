"""Token endpoints for API clients, and the login/logout pages for browsers."""

from __future__ import annotations

from flask import Blueprint as FlaskBlueprint
from flask import redirect, render_template, request, url_for
from flask_login import login_user, logout_user
from flask_smorest import Blueprint
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from ..db import transaction
from ..errors import Unauthorized, ValidationFailed
from ..extensions import csrf
from ..security.ratelimit import login_limited
from . import services
from .access import bearer_token, client_label, current_principal, public, roles_required
from .schemas import RefreshRequestSchema, TokenRequestSchema, TokenSchema, UserSchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Authentication")
pages = FlaskBlueprint("auth_pages", __name__)


@blp.route("/auth/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@login_limited
@public
def token(body):
    """Exchange a username and password for an access and a refresh token."""
    return log_in(body)


def log_in(body: dict) -> dict:
    """A token pair for valid credentials (shared by the web and the mobile API)."""
    with transaction():
        user = services.authenticate(body["username"], body["password"])
        return services.issue_tokens(user, client_label())


def refresh_pair(body: dict) -> dict:
    """A new token pair for a refresh token, which is then spent. A spent one presented again ends its
    login: that revocation is committed, then the caller gets 401."""
    with transaction():
        try:
            return services.refresh_tokens(body["refresh_token"], client_label())
        except services.RefreshTokenReplayed as err:
            replayed = err  # leave the block normally, so the revocation commits
    raise replayed


def log_out() -> None:
    """Revoke the bearer token of this request."""
    with transaction():
        services.revoke_token(bearer_token())


@blp.route("/auth/refresh", methods=["POST"])
@blp.arguments(RefreshRequestSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@public
def refresh(body):
    """Trade a refresh token (single use) for a new token pair."""
    return refresh_pair(body)


@blp.route("/auth/logout", methods=["POST"])
@blp.response(204)
@roles_required()
def logout():
    """Revoke the bearer token used for this call."""
    log_out()


@blp.route("/me", methods=["GET"])
@blp.response(200, UserSchema)
@roles_required()
def me():
    """The logged-in user."""
    return current_principal()


def csrf_ok() -> bool:
    """Whether a posted page form carries this session's CSRF token (Flask-WTF: signed, compared in
    constant time)."""
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return False
    return True


def require_csrf() -> None:
    """422 unless this request carries the session's CSRF token (form field or X-CSRFToken header)."""
    try:
        csrf.protect()
    except CSRFError as err:
        raise ValidationFailed("your form expired; please reload the page and try again",
                               errors=[{"field": "csrf_token", "message": err.description}]) from None


def _next_page() -> str:
    """Where to go after signing in: the page that asked for it (same site only), else the start page."""
    target = request.args.get("next") or ""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@pages.route("/login", methods=["GET", "POST"])
@login_limited
@public
def login_page():
    """Session login for the browser pages."""
    error = None
    if request.method == "POST":
        if not csrf_ok():
            error = "Your form expired; please try again."
        else:
            try:
                with transaction():
                    user = services.authenticate(request.form.get("username", ""), request.form.get("password", ""))
                login_user(user)
                return redirect(_next_page())
            except Unauthorized as err:
                error = err.detail
    return render_template("web/login.html", error=error), 401 if error else 200


@pages.route("/logout", methods=["POST", "GET"])
@public
def logout_page():
    """End the browser session."""
    logout_user()
    return redirect(url_for("auth_pages.login_page"))
