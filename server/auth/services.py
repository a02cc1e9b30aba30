"""Authentication services: passwords (argon2), API tokens, users."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import select, update

from ..db import utcnow
from ..errors import Conflict, NotFound, Unauthorized, ValidationFailed
from ..extensions import db
from .models import ROLES, ApiToken, User

_hasher = PasswordHasher()
# Verifying against a dummy hash keeps unknown-user logins as slow as wrong passwords.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


def create_user(username: str, password: str, roles: list[str], *, email: str | None = None,
                full_name: str = "") -> User:
    """Create a user; roles must be known, the username unused."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValidationFailed("unknown role", errors=[{"field": "roles", "message": f"unknown: {unknown}"}])
    if len(password) < 8:
        raise ValidationFailed("password too short",
                               errors=[{"field": "password", "message": "at least 8 characters"}])
    if db.session.scalars(select(User).where(User.username == username)).first():
        raise Conflict(f"user '{username}' already exists")
    user = User(username=username, email=email, full_name=full_name or username,
                password_hash=hash_password(password), roles=list(roles))
    db.session.add(user)
    db.session.flush()
    return user


def ensure_user(username: str, password: str, roles: list[str], **fields) -> User:
    """Create a user unless one with that name exists (idempotent seeding)."""
    user = db.session.scalars(select(User).where(User.username == username)).first()
    return user or create_user(username, password, roles, **fields)


def authenticate(username: str, password: str) -> User:
    """Check a username and password; Unauthorized on any mismatch."""
    user = db.session.scalars(select(User).where(User.username == username)).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise Unauthorized("wrong username or password") from None
    if user is None or not user.active:
        raise Unauthorized("wrong username or password")
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_tokens(user: User, client: str | None = None, family: str | None = None) -> dict:
    """Issue an access token and a refresh token (only their hashes are stored), of a new login unless
    ``family`` names the login they continue (a rotation)."""
    now = utcnow()
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    access_ttl = timedelta(hours=current_app.config["API_TOKEN_HOURS"])
    refresh_ttl = timedelta(days=current_app.config["REFRESH_TOKEN_DAYS"])
    family = family or secrets.token_hex(16)
    db.session.add_all([
        ApiToken(user_id=user.id, token_hash=_digest(access), kind="access", client=client,
                 expires_at=now + access_ttl, family=family),
        ApiToken(user_id=user.id, token_hash=_digest(refresh), kind="refresh", client=client,
                 expires_at=now + refresh_ttl, family=family),
    ])
    db.session.flush()
    return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "expires_in": int(access_ttl.total_seconds()), "user": user}


# digest -> (monotonic deadline, token expiry, detached user). Saves a query per API call; a token
# revoked on another process stops working there within TOKEN_CACHE_SECONDS (on this one, at once);
# an expired token stops working everywhere at its expiry, cached or not.
_token_cache: dict[str, tuple[float, datetime, User]] = {}


def user_for_token(token: str, kind: str = "access") -> User | None:
    """The active user holding a valid, unexpired, unrevoked token, or None."""
    digest = _digest(token)
    ttl = current_app.config.get("TOKEN_CACHE_SECONDS", 10.0)
    if kind == "access" and ttl > 0:
        hit = _token_cache.get(digest)
        if hit is not None and hit[0] > time.monotonic() and hit[1] > utcnow():
            return hit[2]
    found = _lookup_token(digest, kind)
    if found is None:
        return None
    user, expires_at = found
    if kind == "access" and ttl > 0:
        db.session.expunge(user)
        if len(_token_cache) > 10_000:
            _token_cache.clear()
        _token_cache[digest] = (time.monotonic() + ttl, expires_at, user)
    return user


def _lookup_token(digest: str, kind: str) -> tuple[User, datetime] | None:
    row = db.session.execute(
        select(User, ApiToken.expires_at).join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest, ApiToken.kind == kind, ApiToken.revoked_at.is_(None),
               ApiToken.expires_at > utcnow(), User.active.is_(True))).first()
    return (row[0], row[1]) if row is not None else None


class RefreshTokenReplayed(Unauthorized):
    """A spent refresh token was presented again: its login has been revoked (commit that, then answer)."""


def refresh_tokens(refresh_token: str, client: str | None = None) -> dict:
    """Rotate: a refresh token is single-use and yields a new pair of the same login. A spent one presented
    again means two parties hold it (it was stolen, or leaked): the whole login is revoked and
    :class:`RefreshTokenReplayed` raised — the caller commits before answering 401."""
    row = db.session.scalars(select(ApiToken).where(ApiToken.token_hash == _digest(refresh_token),
                                                    ApiToken.kind == "refresh")).first()
    if row is None or row.expires_at <= utcnow():
        raise Unauthorized("the refresh token is invalid or expired")
    # Spend it with a conditional UPDATE: of two concurrent presentations exactly one wins.
    spent = db.session.execute(update(ApiToken).where(ApiToken.id == row.id, ApiToken.revoked_at.is_(None))
                               .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    if spent.rowcount != 1:
        revoke_login(row)
        raise RefreshTokenReplayed("the refresh token was already used or its login has ended; sign in again")
    if not row.user.active:
        raise Unauthorized("the refresh token is invalid or expired")
    return issue_tokens(row.user, client, family=row.family)


def revoke_token(token: str) -> None:
    """Log out: revoke the login of this bearer token (its refresh token too), or just the token when it
    predates logins being recorded."""
    row = db.session.scalars(select(ApiToken).where(ApiToken.token_hash == _digest(token))).first()
    if row is not None:
        revoke_login(row)


def revoke_login(token: ApiToken) -> None:
    """Revoke every token of ``token``'s login (its family), and forget them in this process's cache."""
    same_login = ApiToken.family == token.family if token.family else ApiToken.id == token.id
    for digest in db.session.scalars(select(ApiToken.token_hash).where(same_login)):
        _token_cache.pop(digest, None)
    db.session.execute(update(ApiToken).where(same_login, ApiToken.revoked_at.is_(None))
                       .values(revoked_at=utcnow()).execution_options(synchronize_session=False))


def get_user(user_id: int) -> User:
    """Load a user or raise NotFound."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def list_users() -> list[User]:
    """All users by name."""
    return list(db.session.scalars(select(User).order_by(User.username)))
