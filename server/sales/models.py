"""Sales records: teams, contacts, leads, opportunities with their stage
history, products and prices, quotes with lines, contracts. Accounts are
shared with after-sales (``server.aftersales.models.Account``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import JSONType, UTCDateTime, utcnow
from ..extensions import db

LEAD_STATUSES = ("new", "assigned", "contacted", "qualified", "disqualified", "pool")
STAGES = ("initial_contact", "needs_confirmed", "solution_demo", "quote_negotiation", "won", "lost")


class Team(db.Model):
    """A sales team; its manager approves the first discount level for its reps."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class TeamMember(db.Model):
    """A rep (or manager) in a team."""

    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # round robin among equals


class Contact(db.Model):
    """A person at an account."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))


class Lead(db.Model):
    """A prospect; ``*_key`` columns hold the normalised phone / e-mail / company for duplicate checks."""

    __tablename__ = "leads"
    __table_args__ = (Index("ix_leads_email_key", "email_key"), Index("ix_leads_phone_key", "phone_key"),
                      Index("ix_leads_company_key", "company_key"), Index("ix_leads_owner", "owner_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    company: Mapped[str] = mapped_column(String(200))
    contact_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    email_key: Mapped[str | None] = mapped_column(String(200))
    phone_key: Mapped[str | None] = mapped_column(String(30))
    company_key: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(30))
    industry: Mapped[str | None] = mapped_column(String(50))
    region: Mapped[str | None] = mapped_column(String(50))
    product_line: Mapped[str | None] = mapped_column(String(50))
    company_size: Mapped[int | None] = mapped_column(Integer)
    engagement: Mapped[int] = mapped_column(Integer, default=0)  # e.g. pages viewed, events attended
    score: Mapped[int | None] = mapped_column(Integer)
    grade: Mapped[str | None] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20), default="new")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    previous_owner_ids: Mapped[list] = mapped_column(JSONType, default=list)  # taken back for not contacting
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"))
    # The opportunity it became (no FK: leads and opportunities would reference each other).
    opportunity_id: Mapped[int | None] = mapped_column(Integer)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id"))
    notes: Mapped[str | None] = mapped_column(Text)
    disqualify_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_contacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Opportunity(db.Model):
    """A deal moving through the stages."""

    __tablename__ = "opportunities"
    __table_args__ = (Index("ix_opps_account_line", "account_id", "product_line", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    product_line: Mapped[str | None] = mapped_column(String(50))
    stage: Mapped[str] = mapped_column(String(30), default="initial_contact")
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=0)
    needs: Mapped[str | None] = mapped_column(Text)
    lost_reason: Mapped[str | None] = mapped_column(String(300))
    flagged_duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("opportunities.id"))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stage_entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StageChange(db.Model):
    """One stage an opportunity was in, and for how long."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id"), index=True)
    stage: Mapped[str] = mapped_column(String(30))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Product(db.Model):
    """A product on the price list (unit cost for margins)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    product_line: Mapped[str] = mapped_column(String(50))
    list_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    unit_cost: Mapped[Decimal] = mapped_column(Numeric(12, 2))


class Quote(db.Model):
    """A priced offer on an opportunity; cannot be sent before its discount is approved."""

    __tablename__ = "quotes"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft/pending/approved/rejected/sent
    discount_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=0)
    approval_chain: Mapped[list] = mapped_column(JSONType, default=list)
    decisions: Mapped[list] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    lines: Mapped[list[QuoteLine]] = relationship(order_by="QuoteLine.id", lazy="selectin")
    opportunity: Mapped[Opportunity] = relationship()


class QuoteLine(db.Model):
    """A product on a quote."""

    __tablename__ = "quote_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    quote_id: Mapped[int] = mapped_column(ForeignKey("quotes.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    unit_cost: Mapped[Decimal] = mapped_column(Numeric(12, 2))

    product: Mapped[Product] = relationship(lazy="joined")


class Contract(db.Model):
    """The contract an accepted quote becomes."""

    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunities.id"), unique=True)
    quote_id: Mapped[int] = mapped_column(ForeignKey("quotes.id"))
    value: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft / signed
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signed_by: Mapped[str | None] = mapped_column(String(200))
