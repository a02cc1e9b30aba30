"""``Idempotency-Key`` for mobile POSTs: a phone retrying on a bad network
gets the first answer again instead of doing the action twice.

The stored answer is written in the same transaction as the action, so
either both exist or neither; a concurrent duplicate loses on the unique
(user, key) constraint and replays the winner's answer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps

from flask import request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.aftersales.models import IdempotencyRecord
from server.auth.access import current_principal
from server.db import transaction, utcnow
from server.errors import ValidationFailed
from server.extensions import db
from server.serialize import json_response

HEADER = "Idempotency-Key"


def _fingerprint() -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replay(user_id: int, key: str, fingerprint: str):
    record = db.session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id,
                                                               IdempotencyRecord.key == key))
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise ValidationFailed(f"{HEADER} '{key}' was already used for a different request",
                               errors=[{"field": HEADER, "message": "reused with a different request"}])
    response = json_response(record.body, record.status)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent(view: Callable) -> Callable:
    """Run ``view`` (returning ``(json_payload, status)``) in one transaction, at most once per key."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            with transaction():
                payload, status = view(*args, **kwargs)
            return json_response(payload, status)
        if len(key) > 100:
            raise ValidationFailed(f"{HEADER} is too long", errors=[{"field": HEADER, "message": "at most 100 chars"}])
        user, fingerprint = current_principal(), _fingerprint()
        replayed = _replay(user.id, key, fingerprint)
        if replayed is not None:
            return replayed
        try:
            with transaction():
                payload, status = view(*args, **kwargs)
                db.session.add(IdempotencyRecord(user_id=user.id, key=key, fingerprint=fingerprint, status=status,
                                                 body=payload, created_at=utcnow()))
        except IntegrityError:
            replayed = _replay(user.id, key, fingerprint)  # a concurrent retry won: answer as it did
            if replayed is None:
                raise
            return replayed
        return json_response(payload, status)

    return wrapper
