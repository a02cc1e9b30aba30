"""After-sales records: customer accounts and their assets, engineers, service
requests (work orders) with their status log, parts and stock, payments,
ratings, and the bookkeeping that makes public links single-use and mobile
POSTs idempotent."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import JSONType, UTCDateTime, utcnow
from ..extensions import db

TIERS = ("normal", "key", "vip")
PRIORITIES = ("low", "normal", "high", "urgent")
ENGINEER_STATUSES = ("available", "break", "off")
# The work-order status flow (PRODUCT.md §3); 'dispatching' while no one holds the offer.
REQUEST_STATUSES = ("dispatching", "offered", "accepted", "en_route", "on_site", "work_done", "closed",
                    "cancelled")
PAYMENT_METHODS = ("cash", "card", "transfer")


class Account(db.Model):
    """A customer company; its tier sets SLA targets and dispatch priority."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(10), default="normal")
    phone: Mapped[str | None] = mapped_column(String(50))
    email: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Asset(db.Model):
    """An installed machine with a QR code on it."""

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(100), unique=True)
    model: Mapped[str] = mapped_column(String(100), index=True)
    product_line: Mapped[str] = mapped_column(String(50))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    site_address: Mapped[str] = mapped_column(String(300))
    lat: Mapped[float]
    lon: Mapped[float]
    install_date: Mapped[date | None] = mapped_column(Date)
    warranty_end: Mapped[date | None] = mapped_column(Date)
    contract_end: Mapped[date | None] = mapped_column(Date)  # service contract covering labour and parts
    # Bumped to revoke every QR code printed so far for this asset.
    qr_generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship(lazy="joined")


class Engineer(db.Model):
    """A field engineer; positions are indexed by grid cell so dispatch reads only nearby rows."""

    __tablename__ = "engineers"
    __table_args__ = (
        # Cell first: dispatch reads OR-ed ranges of cells, each one an index range scan.
        Index("ix_engineers_pos_cell", "pos_cell"),
        Index("ix_engineers_home_cell", "home_cell"),
        CheckConstraint("open_jobs >= 0", name="ck_engineers_open_jobs"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    skills: Mapped[str] = mapped_column(String(500), default=",")  # ",hvac,elevator," (LIKE-searchable)
    home_lat: Mapped[float]
    home_lon: Mapped[float]
    home_cell: Mapped[int] = mapped_column(Integer)
    shift_start: Mapped[str] = mapped_column(String(5), default="08:00")  # local time, HH:MM
    shift_end: Mapped[str] = mapped_column(String(5), default="17:00")  # before start = overnight shift
    status: Mapped[str] = mapped_column(String(10), default="available")
    last_lat: Mapped[float | None]
    last_lon: Mapped[float | None]
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pos_cell: Mapped[int | None] = mapped_column(Integer)
    open_jobs: Mapped[int] = mapped_column(Integer, default=0)  # offered + accepted, not closed
    labour_rate: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))

    @property
    def skill_list(self) -> list[str]:
        """The skills as a list."""
        return [s for s in self.skills.split(",") if s]


class ServiceRequest(db.Model):
    """A fault report and the work order that resolves it; ``version`` guards concurrent writes."""

    __tablename__ = "service_requests"
    __table_args__ = (Index("ix_requests_status", "status"), Index("ix_requests_engineer", "engineer_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    tier: Mapped[str] = mapped_column(String(10))
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    required_skill: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text)
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    reporter_phone: Mapped[str | None] = mapped_column(String(50))
    photo_path: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(20))  # qr / dispatcher / api
    status: Mapped[str] = mapped_column(String(20), default="dispatching")
    covered_by: Mapped[str | None] = mapped_column(String(20))  # warranty / contract / None
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    override_engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    declined_engineer_ids: Mapped[list] = mapped_column(JSONType, default=list)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id"))
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # SLA clock (targets from workflows/sla_targets.dmn)
    response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # an engineer accepted
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # work done and fixed
    sla_events: Mapped[dict] = mapped_column(JSONType, default=dict)  # "response_warning" → iso time …
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    visits: Mapped[int] = mapped_column(Integer, default=0)
    first_time_fix: Mapped[bool | None]
    work_notes: Mapped[str | None] = mapped_column(Text)
    labour_minutes: Mapped[int | None] = mapped_column(Integer)
    amount_due: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    rating_jti: Mapped[str | None] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    asset: Mapped[Asset] = relationship(lazy="joined")
    engineer: Mapped[Engineer | None] = relationship(foreign_keys=[engineer_id])

    __mapper_args__ = {"version_id_col": version}


class WorkOrderEvent(db.Model):
    """One step of a work order (offered, declined, accepted, en route, …) with time and position."""

    __tablename__ = "work_order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), index=True)
    status: Mapped[str] = mapped_column(String(30))
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Part(db.Model):
    """A catalogue part."""

    __tablename__ = "parts"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    product_line: Mapped[str | None] = mapped_column(String(50))
    unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))


class StockLevel(db.Model):
    """Stock of one part at one location (the warehouse, or an engineer's van); never below zero."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        UniqueConstraint("part_id", "location"),
        CheckConstraint("quantity >= 0", name="ck_stock_quantity"),
        CheckConstraint("reserved >= 0 AND reserved <= quantity", name="ck_stock_reserved"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("parts.id"))
    location: Mapped[str] = mapped_column(String(40))  # "warehouse" or "van:<engineer id>"
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)

    part: Mapped[Part] = relationship(lazy="joined")


class PartUsage(db.Model):
    """Parts reserved for, consumed on, or returned from a work order."""

    __tablename__ = "part_usages"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), index=True)
    stock_id: Mapped[int] = mapped_column(ForeignKey("stock_levels.id"))
    part_id: Mapped[int] = mapped_column(ForeignKey("parts.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))  # reserved / consumed / released / returned
    unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    part: Mapped[Part] = relationship(lazy="joined")
    stock: Mapped[StockLevel] = relationship()


class Payment(db.Model):
    """A payment taken for a work order; one per work order."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    method: Mapped[str] = mapped_column(String(10))
    reference: Mapped[str | None] = mapped_column(String(100))
    receipt_number: Mapped[str] = mapped_column(String(30), unique=True)
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rating(db.Model):
    """The customer's rating of a visit (one per work order)."""

    __tablename__ = "ratings"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="ck_ratings_stars"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), unique=True)
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("engineers.id"))
    stars: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(db.Model):
    """The stored answer to a POST made with an ``Idempotency-Key``, replayed on retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str] = mapped_column(String(64))  # method + path + body hash
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
