"""Users, their roles and API tokens."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import JSONType, UTCDateTime, utcnow
from ..extensions import db

ROLES = ("admin", "designer", "sales_rep", "sales_manager", "director", "finance", "dispatcher",
         "service_manager", "engineer")


class User(UserMixin, db.Model):
    """A person who logs in; ``roles`` is a list of names from ``ROLES``."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str | None] = mapped_column(String(200), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_active(self) -> bool:  # Flask-Login
        """Whether the account may log in."""
        return self.active

    def has_role(self, *roles: str) -> bool:
        """True if the user holds any of ``roles`` (admin holds all)."""
        return "admin" in self.roles or any(role in self.roles for role in roles)


class ApiToken(db.Model):
    """A bearer token (stored hashed); access tokens are short-lived, refresh tokens rotate.

    ``family`` is one login: the first pair and every pair rotated from it share it, so logging out or
    presenting a spent refresh token again (stolen and used by someone else) ends the whole login."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user", "user_id"), Index("ix_api_tokens_family", "family"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    client: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    family: Mapped[str | None] = mapped_column(String(32))  # NULL: issued before families existed

    user: Mapped[User] = relationship()
