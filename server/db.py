"""Database helpers: the unit of work (commit once at the edge), after-commit
hooks, portable column types and SQLite tuning."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, event, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.types import TypeDecorator

from .extensions import db

JSONType = JSON().with_variant(JSONB(), "postgresql")


# PostgreSQL's "deadlock detected" and "could not serialize access": the unit of work lost a race.
CONCURRENCY_FAILURES = frozenset({"40P01", "40001"})


def is_concurrency_failure(err: BaseException) -> bool:
    """Whether a database error means only that a concurrent transaction won (worth trying again)."""
    return isinstance(err, OperationalError) and getattr(err.orig, "sqlstate", None) in CONCURRENCY_FAILURES


def utcnow() -> datetime:
    """Current time, timezone-aware UTC (tests move it with time-machine)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record):
    """WAL + busy timeout so web processes and workers can share one SQLite file."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def after_commit(hook: Callable[[], None]) -> None:
    """Run ``hook`` once the current transaction commits (dropped on rollback)."""
    db.session.info.setdefault("after_commit", []).append(hook)


def queue_insert(model, row: dict) -> None:
    """Queue a row for a batched INSERT (for append-only rows never read back in the same unit of work)."""
    db.session.info.setdefault("queued_inserts", {}).setdefault(model, []).append(row)


def flush_queued_inserts() -> None:
    """Write the queued rows: one INSERT statement per table."""
    queued = db.session.info.pop("queued_inserts", None)
    if not queued:
        return
    if db.session.new or db.session.dirty:
        db.session.flush()  # rows may refer to objects that get their ids now
    connection = db.session.connection()
    for model, rows in queued.items():
        # A value that is an object with an id (a model, or a row namespace) stands for that id,
        # so rows can be queued before the object they point at has been inserted.
        rows = [{k: (v.id if hasattr(v, "id") else v) for k, v in row.items()} for row in rows]
        connection.execute(_insert_statement(model), rows)


_insert_statements: dict = {}


def _insert_statement(model):
    # Built once per table so SQLAlchemy reuses its compiled form.
    if model not in _insert_statements:
        _insert_statements[model] = insert(model.__table__)
    return _insert_statements[model]


@contextmanager
def transaction() -> Iterator[None]:
    """Unit of work: commit once at the end, or roll everything back; then run after-commit hooks."""
    session = db.session
    try:
        yield
        flush_queued_inserts()
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop("after_commit", None)
        session.info.pop("queued_inserts", None)
        raise
    for hook in session.info.pop("after_commit", []):
        hook()
