"""Token endpoints for API clients, and the login/logout pages for browsers."""

from __future__ import annotations

from flask import Blueprint as FlaskBlueprint
from flask import redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from flask_smorest import Blueprint

from ..db import transaction
from ..errors import Unauthorized
from ..security.ratelimit import count, require_budget
from . import services
from .access import bearer_token, client_label, current_principal, public, roles_required
from .schemas import RefreshRequestSchema, TokenRequestSchema, TokenSchema, UserSchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Authentication")
pages = FlaskBlueprint("auth_pages", __name__)


@blp.route("/auth/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])  # open to anyone: no bearer token
@public
def token(body):
    """Exchange a username and password for an access and a refresh token."""
    return log_in(body)


def checked_credentials(username: str, password: str):
    """The user for these credentials, with brute force slowed down: after too many failed logins in a
    minute from one address, or for one username from anywhere, every attempt gets 429 until the minute
    ends (``FLOWDESK_RATE_LOGIN_FAILURES``, ``FLOWDESK_RATE_LOGIN_FAILURES_USER``; 10 each)."""
    user_key = f"user:{username.strip().lower()[:80]}"
    require_budget("login-failures", per_minute=10)
    require_budget("login-failures-user", per_minute=10, key=user_key)
    try:
        return services.authenticate(username, password)
    except Unauthorized:
        count("login-failures")
        count("login-failures-user", key=user_key)
        raise


def log_in(body: dict) -> dict:
    """A token pair for valid credentials (shared by the web and the mobile API)."""
    with transaction():
        user = checked_credentials(body["username"], body["password"])
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


def csrf_token() -> str:
    """A per-session CSRF token for page forms."""
    import secrets

    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def csrf_ok() -> bool:
    """Whether a posted page form carries this session's CSRF token."""
    sent = request.form.get("csrf_token")
    return bool(sent) and sent == session.get("csrf")


def _next_page() -> str:
    """Where to go after signing in: the page that asked for it (same site only), else the start page."""
    target = request.args.get("next") or ""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@pages.route("/login", methods=["GET", "POST"])
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
                    user = checked_credentials(request.form.get("username", ""), request.form.get("password", ""))
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
