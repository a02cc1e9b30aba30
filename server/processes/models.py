"""Process definitions and versions, instances, human tasks, timers, message
subscriptions, incidents and the audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from ..db import JSONType, UTCDateTime, utcnow
from ..extensions import db


class ProcessVersion(db.Model):
    """An immutable deployed version of one process, with the files it needs."""

    __tablename__ = "process_versions"
    __table_args__ = (UniqueConstraint("process_key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_key: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    dialect: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict] = deferred(mapped_column(JSONType))
    source: Mapped[str] = mapped_column(String(20), default="api")
    deployed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


INSTANCE_STATUSES = ("running", "completed", "error", "suspended", "terminated")


class ProcessInstance(db.Model):
    """A running (or finished) process; ``version`` is the optimistic-lock counter."""

    __tablename__ = "process_instances"
    __table_args__ = (Index("ix_instances_status", "status"), Index("ix_instances_key", "process_key"))

    id: Mapped[int] = mapped_column(primary_key=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_versions.id"))
    process_key: Mapped[str] = mapped_column(String(200))
    business_key: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    # Plain JSON, not JSONB: SpiffWorkflow restores tasks in the saved key order (parents first);
    # JSONB would reorder the keys and lose task data.
    state: Mapped[dict] = deferred(mapped_column(JSON))
    serializer_version: Mapped[str] = mapped_column(String(10))
    data: Mapped[dict] = mapped_column(JSONType, default=dict)
    active_element_ids: Mapped[list] = mapped_column(JSONType, default=list)
    incident_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    process_version: Mapped[ProcessVersion] = relationship(lazy="joined")

    @property
    def process_version_number(self) -> int:
        """The version number of the process this instance runs on."""
        return self.process_version.version

    # SQLAlchemy adds "AND version = :old" to every UPDATE and raises
    # StaleDataError when another writer got there first.
    __mapper_args__ = {"version_id_col": version}


class HumanTask(db.Model):
    """A ready user/manual task, mirrored so an inbox is one SQL query."""

    __tablename__ = "human_tasks"
    __table_args__ = (
        UniqueConstraint("instance_id", "task_guid"),
        Index("ix_tasks_open_role", "status", "candidate_role"),
        Index("ix_tasks_open_id", "status", "id"),  # the inbox: a page of open tasks in id order, no sort
        Index("ix_tasks_open_assignee", "status", "assignee_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    task_guid: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    lane: Mapped[str | None] = mapped_column(String(200))
    form_key: Mapped[str | None] = mapped_column(String(200))
    candidate_role: Mapped[str | None] = mapped_column(String(50))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20), default="open")
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    instance: Mapped[ProcessInstance] = relationship()

    @property
    def instance_version(self) -> int:
        """The instance's optimistic-lock version (clients send it back when completing)."""
        return self.instance.version


class Timer(db.Model):
    """A waiting timer event; the database row is the source of truth, RQ only delivers it."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("instance_id", "task_guid", "due_at"),
        Index("ix_timers_pending", "fired_at", "cancelled_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    task_guid: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    instance: Mapped[ProcessInstance] = relationship()


class MessageSubscription(db.Model):
    """An instance waiting for a named message, found by (name, correlation key) in one query."""

    __tablename__ = "message_subscriptions"
    __table_args__ = (Index("ix_subscriptions_lookup", "message_name", "correlation_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    task_guid: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(200))
    message_name: Mapped[str] = mapped_column(String(200))
    correlation_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    instance: Mapped[ProcessInstance] = relationship()


class Incident(db.Model):
    """Why an instance stopped in error, where, and whether it was resolved."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             index=True)
    element_id: Mapped[str | None] = mapped_column(String(200))
    task_guid: Mapped[str | None] = mapped_column(String(36))
    message: Mapped[str] = mapped_column(Text)
    line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    instance: Mapped[ProcessInstance] = relationship()


class AuditEvent(db.Model):
    """Append-only record of everything that happened to an instance (or the platform)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_instance", "instance_id", "id"), Index("ix_audit_event", "event"))

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    element_id: Mapped[str | None] = mapped_column(String(200))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    client: Mapped[str | None] = mapped_column(String(300))
    data: Mapped[dict | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
