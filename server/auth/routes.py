"""Token endpoints for API clients, and the login/logout pages for browsers."""

from __future__ import annotations

from flask import Blueprint as FlaskBlueprint
from flask import redirect, render_template_string, request, session, url_for
from flask_login import login_user, logout_user
from flask_smorest import Blueprint

from ..db import transaction
from ..errors import Unauthorized
from . import services
from .access import bearer_token, client_label, current_principal, public, roles_required
from .schemas import RefreshRequestSchema, TokenRequestSchema, TokenSchema, UserSchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Authentication")
pages = FlaskBlueprint("auth_pages", __name__)


@blp.route("/auth/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
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
    """A new token pair for a refresh token, which is then spent."""
    with transaction():
        return services.refresh_tokens(body["refresh_token"], client_label())


def log_out() -> None:
    """Revoke the bearer token of this request."""
    with transaction():
        services.revoke_token(bearer_token())


@blp.route("/auth/refresh", methods=["POST"])
@blp.arguments(RefreshRequestSchema)
@blp.response(200, TokenSchema)
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


_LOGIN = """<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Flowdesk — sign in</title>
<main style="font-family:system-ui;max-width:22rem;margin:4rem auto;padding:0 1rem">
<h1>Flowdesk</h1>{% if error %}<p role="alert" style="color:#b00">{{ error }}</p>{% endif %}
<form method="post"><input type="hidden" name="csrf_token" value="{{ csrf }}">
<p><label for="u">Username</label><br><input id="u" name="username" autocomplete="username" required></p>
<p><label for="p">Password</label><br><input id="p" name="password" type="password"
 autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p></form></main></html>"""


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
                    user = services.authenticate(request.form.get("username", ""), request.form.get("password", ""))
                login_user(user)
                return redirect(url_for("auth_pages.home"))
            except Unauthorized as err:
                error = err.detail
    return render_template_string(_LOGIN, error=error, csrf=csrf_token()), 401 if error else 200


@pages.route("/logout", methods=["POST", "GET"])
@public
def logout_page():
    """End the browser session."""
    logout_user()
    return redirect(url_for("auth_pages.login_page"))


@pages.route("/")
@roles_required()
def home():
    """Landing page after login."""
    user = current_principal()
    return render_template_string(
        "<!doctype html><title>Flowdesk</title><main style='font-family:system-ui;margin:2rem'>"
        "<h1>Flowdesk</h1><p>Signed in as {{ u.full_name }} ({{ ', '.join(u.roles) }}).</p>"
        "<p><a href='/api/openapi.json'>API description</a> · <a href='/logout'>Sign out</a></p></main>", u=user)
