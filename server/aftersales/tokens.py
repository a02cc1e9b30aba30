"""Signed links for QR codes: one per asset (report a fault) and one per
finished job (rate the visit). Tampered → 403, expired or used → 410."""

from __future__ import annotations

import io

import segno
from flask import current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..errors import Gone, PermissionDenied

ASSET_REPORT = "asset-report"
JOB_RATING = "job-rating"
REQUEST_STATUS = "request-status"


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    # The salt separates purposes: a rating token never opens the report page and vice versa.
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"flowdesk-{purpose}")


def sign(purpose: str, payload: dict) -> str:
    """A URL-safe signed, timestamped token carrying ``payload``."""
    return _serializer(purpose).dumps(payload)


def verify(purpose: str, token: str, max_age_days: float) -> dict:
    """The payload of a valid token; PermissionDenied when forged, Gone when expired."""
    try:
        return _serializer(purpose).loads(token, max_age=max_age_days * 86400)
    except SignatureExpired:
        raise Gone("this link has expired; ask the service desk for a new one") from None
    except BadSignature:
        raise PermissionDenied("this link is not valid") from None


def public_url(path: str) -> str:
    """An absolute URL for a public page (FLOWDESK_PUBLIC_BASE_URL, else this request's host)."""
    base = current_app.config.get("PUBLIC_BASE_URL") or (request.host_url if request else "http://127.0.0.1:5000/")
    return base.rstrip("/") + path


def qr_svg(url: str) -> str:
    """An SVG QR code for a URL."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False)
    return out.getvalue().decode()
