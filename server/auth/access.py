"""Access control for routes. Every view must be marked ``@public`` or
``@roles_required(...)``; the app refuses to serve any view that is not
(deny by default). API routes authenticate by bearer token only; pages by
the Flask-Login session."""

from __future__ import annotations

from functools import wraps

from flask import g, request
from flask_login import current_user

from ..errors import PermissionDenied, Unauthorized
from .models import User

ACCESS_ATTR = "_flowdesk_access"


def bearer_token() -> str | None:
    """The bearer token of the request, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_principal() -> User:
    """The authenticated user of this request, or raise Unauthorized."""
    if "principal" in g:
        return g.principal
    from .services import user_for_token

    user = None
    token = bearer_token()
    if token:
        user = user_for_token(token)
    elif not request.path.startswith("/api/") and current_user.is_authenticated:
        # Cookie sessions only for pages: API calls need a token (no CSRF exposure).
        user = current_user._get_current_object()
    if user is None:
        raise Unauthorized("a valid bearer token (API) or login session (pages) is required")
    g.principal = user
    return user


def client_label() -> str:
    """Who/what is calling, for the audit trail: client header + user agent + address."""
    parts = [request.headers.get("X-Client", ""), request.headers.get("User-Agent", ""),
             request.remote_addr or ""]
    return " | ".join(p for p in parts if p)[:300]


def roles_required(*roles: str):
    """Mark a view as needing an authenticated user holding one of ``roles`` (any role if none given)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            user = current_principal()
            if roles and not user.has_role(*roles):
                raise PermissionDenied(f"this needs one of the roles: {', '.join(roles)}")
            return view(*args, **kwargs)

        setattr(wrapper, ACCESS_ATTR, roles or "authenticated")
        return wrapper

    return decorate


def public(view):
    """Mark a view as open to anyone (it must do its own checks, e.g. signed tokens)."""
    setattr(view, ACCESS_ATTR, "public")
    return view
