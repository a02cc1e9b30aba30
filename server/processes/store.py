"""Hot-path persistence of instances and their mirror rows (human tasks, timers,
message subscriptions, incidents) with SQLAlchemy Core on the session's own
connection — same transaction as everything else, committed once at the edge.

Why not the ORM here: every engine run rewrites these rows, and on this path the
ORM's session and unit-of-work bookkeeping cost several times the SQL itself
(a prebuilt Core statement on the connection is ~60 µs, the same through the
session ~170 µs, an ORM flush of a few objects ~1 ms). Rows come back as plain
namespaces, which the marshmallow schemas dump just like ORM objects.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import bindparam, delete, insert, select, update

from ..extensions import db
from .models import HumanTask, Incident, MessageSubscription, ProcessInstance, ProcessVersion, Timer

_instances = ProcessInstance.__table__
_versions = ProcessVersion.__table__
_tasks = HumanTask.__table__
_timers = Timer.__table__
_subs = MessageSubscription.__table__
_incidents = Incident.__table__

_INSTANCE_COLUMNS = [c for c in _instances.c if c.name != "state"]
_LOAD_INSTANCE = (select(*_INSTANCE_COLUMNS, _instances.c.state, _versions.c.version.label("process_version_number"),
                         _versions.c.dialect)
                  .join(_versions, _versions.c.id == _instances.c.process_version_id)
                  .where(_instances.c.id == bindparam("iid")))
_LOAD_TASK_WITH_INSTANCE = (
    select(*[c.label(f"task__{c.name}") for c in _tasks.c], *_INSTANCE_COLUMNS, _instances.c.state,
           _versions.c.version.label("process_version_number"), _versions.c.dialect)
    .join(_instances, _instances.c.id == _tasks.c.instance_id)
    .join(_versions, _versions.c.id == _instances.c.process_version_id)
    .where(_tasks.c.id == bindparam("tid")))
_VERSION_BY_NUMBER = select(_versions.c.id, _versions.c.process_key, _versions.c.version, _versions.c.dialect).where(
    _versions.c.process_key == bindparam("key"), _versions.c.version == bindparam("number"))
_LATEST_VERSION = (select(_versions.c.id, _versions.c.process_key, _versions.c.version, _versions.c.dialect)
                   .where(_versions.c.process_key == bindparam("key")).order_by(_versions.c.version.desc()).limit(1))
_INSERT_INSTANCE = insert(_instances).returning(_instances.c.id)
# Every engine run rewrites the same columns; "seen" is the version the caller read (optimistic lock).
RUN_FIELDS = ("state", "data", "active_element_ids", "status", "ended_at", "incident_count", "updated_at")
_UPDATE_INSTANCE = (update(_instances)
                    .where(_instances.c.id == bindparam("iid"), _instances.c.version == bindparam("seen"))
                    .values(version=bindparam("next"), **{name: bindparam(f"v_{name}") for name in RUN_FIELDS}))
_OPEN_TASKS = select(_tasks).where(_tasks.c.instance_id == bindparam("iid"), _tasks.c.status == "open")
_INSERT_TASK = insert(_tasks).returning(_tasks.c.id)
_CLOSE_TASK = (update(_tasks).where(_tasks.c.id == bindparam("tid"), _tasks.c.status == "open")
               .values(status="completed", completed_at=bindparam("at"), completed_by_id=bindparam("by")))
_PENDING_TIMERS = select(_timers).where(_timers.c.instance_id == bindparam("iid"), _timers.c.fired_at.is_(None),
                                        _timers.c.cancelled_at.is_(None))
_INSERT_TIMER = insert(_timers).returning(_timers.c.id)
_CLAIM_TIMER = (update(_timers).where(_timers.c.id == bindparam("tid"), _timers.c.fired_at.is_(None),
                                      _timers.c.cancelled_at.is_(None))
                .values(fired_at=bindparam("at"), attempts=_timers.c.attempts + 1))
_LOAD_TIMER = select(_timers).where(_timers.c.id == bindparam("tid"))
# FOR NO KEY UPDATE: what an UPDATE of the row takes anyway; it lets inserts that point at the
# instance (audit rows, tasks, timers: KEY SHARE) through.
_LOCK_INSTANCE = select(_instances.c.version).where(_instances.c.id == bindparam("iid")).with_for_update(
    key_share=True)
_SUBSCRIPTIONS = select(_subs).where(_subs.c.instance_id == bindparam("iid"))
_INSERT_SUB = insert(_subs).returning(_subs.c.id)
_INBOX = (select(*_tasks.c, _instances.c.version.label("instance__version"),
                 _instances.c.process_key.label("instance__process_key"),
                 _instances.c.business_key.label("instance__business_key"))
          .join(_instances, _instances.c.id == _tasks.c.instance_id).where(_tasks.c.status == "open"))
_INCIDENTS = select(_incidents).where(_incidents.c.instance_id == bindparam("iid")).order_by(_incidents.c.id)
_INSERT_INCIDENT = insert(_incidents).returning(_incidents.c.id)


def _conn():
    return db.session.connection()


def _one(statement, params) -> SimpleNamespace | None:
    row = _conn().execute(statement, params).first()
    return SimpleNamespace(**row._mapping) if row is not None else None


def _all(statement, params) -> list[SimpleNamespace]:
    return [SimpleNamespace(**row._mapping) for row in _conn().execute(statement, params)]


def version_row(process_key: str, number: int | None) -> SimpleNamespace | None:
    """id, process_key, version and dialect of a given (or the latest) version of a process.

    Versions are immutable, so a numbered one is cached for good; "the latest" is cached for
    LATEST_VERSION_CACHE_SECONDS (a deploy clears this process's cache at once; other processes
    see a new version within that time). One query less on the hottest path."""
    cache = current_app.extensions.setdefault("flowdesk_version_cache", {})
    now = time.monotonic()
    hit = cache.get((process_key, number))
    if hit is not None and (number is not None or hit[0] > now):
        return hit[1]
    if number is None:
        row = _one(_LATEST_VERSION, {"key": process_key})
    else:
        row = _one(_VERSION_BY_NUMBER, {"key": process_key, "number": number})
    if row is not None:
        cache[(process_key, number)] = (now + current_app.config["LATEST_VERSION_CACHE_SECONDS"], row)
    return row


def forget_versions() -> None:
    """Drop the cached version lookups (after a deploy)."""
    current_app.extensions.pop("flowdesk_version_cache", None)


def load_instance(instance_id: int) -> SimpleNamespace | None:
    """An instance with its state, version number and dialect."""
    return _one(_LOAD_INSTANCE, {"iid": instance_id})


def load_task_with_instance(task_id: int) -> tuple[SimpleNamespace, SimpleNamespace] | None:
    """A human task row and its instance (with state), in one query."""
    row = _conn().execute(_LOAD_TASK_WITH_INSTANCE, {"tid": task_id}).first()
    if row is None:
        return None
    task, instance = {}, {}
    for key, value in row._mapping.items():
        if key.startswith("task__"):
            task[key.removeprefix("task__")] = value
        else:
            instance[key] = value
    return SimpleNamespace(**task), SimpleNamespace(**instance)


def insert_instance(values: dict) -> int:
    """Insert a new instance row; returns its id."""
    return _conn().execute(_INSERT_INSTANCE, values).scalar_one()


def lock_instance(instance_id: int) -> int | None:
    """Lock an instance row until the transaction ends and return its version (None: no such instance).

    The lock order of every write that advances an instance: this row first, then its tasks, timers and
    the domain rows its services touch. Without it a timer job (timer row, then instance) and a task
    completion (instance, then that timer row to cancel it) deadlocked on PostgreSQL. SQLite serialises
    writers anyway (and ignores FOR UPDATE)."""
    return _conn().execute(_LOCK_INSTANCE, {"iid": instance_id}).scalar()


def update_instance(instance_id: int, seen_version: int, values: dict) -> bool:
    """Write the run fields of an instance only if it is still at ``seen_version``; bumps the version."""
    params = {"iid": instance_id, "seen": seen_version, "next": seen_version + 1,
              **{f"v_{name}": values[name] for name in RUN_FIELDS}}
    return _conn().execute(_UPDATE_INSTANCE, params).rowcount == 1


def move_instance(instance_id: int, process_version_id: int) -> None:
    """Point an instance at another version of its process (retry after a redeploy)."""
    _conn().execute(update(_instances).where(_instances.c.id == instance_id)
                    .values(process_version_id=process_version_id))


def open_tasks(instance_id: int) -> list[SimpleNamespace]:
    """Open human tasks of an instance."""
    return _all(_OPEN_TASKS, {"iid": instance_id})


def insert_row(table_name: str, values: dict) -> int:
    """Insert one mirror row (tasks, timers, subscriptions, incidents); returns its id."""
    statement = {"human_tasks": _INSERT_TASK, "timers": _INSERT_TIMER, "message_subscriptions": _INSERT_SUB,
                 "incidents": _INSERT_INCIDENT}[table_name]
    return _conn().execute(statement, values).scalar_one()


def update_rows(table_name: str, ids: list[int], **values) -> None:
    """Set columns on some mirror rows."""
    if ids:
        table = db.metadata.tables[table_name]
        _conn().execute(update(table).where(table.c.id.in_(ids)).values(**values))


def delete_rows(table_name: str, ids: list[int]) -> None:
    """Delete some mirror rows (message subscriptions that are no longer waited for)."""
    if ids:
        table = db.metadata.tables[table_name]
        _conn().execute(delete(table).where(table.c.id.in_(ids)))


def close_task(task_id: int, user_id: int, at) -> bool:
    """Mark an open task completed; False if someone else closed it first (guarded update)."""
    return _conn().execute(_CLOSE_TASK, {"tid": task_id, "by": user_id, "at": at}).rowcount == 1


def pending_timers(instance_id: int) -> list[SimpleNamespace]:
    """Unfired, uncancelled timers of an instance."""
    return _all(_PENDING_TIMERS, {"iid": instance_id})


def load_timer(timer_id: int) -> SimpleNamespace | None:
    """A timer row."""
    return _one(_LOAD_TIMER, {"tid": timer_id})


def claim_timer(timer_id: int, at) -> bool:
    """``fired_at IS NULL`` guard: True for exactly one caller per timer."""
    return _conn().execute(_CLAIM_TIMER, {"tid": timer_id, "at": at}).rowcount == 1


def subscriptions(instance_id: int) -> list[SimpleNamespace]:
    """Message subscriptions of an instance."""
    return _all(_SUBSCRIPTIONS, {"iid": instance_id})


def inbox(user_id: int, roles: list[str] | None, *, include_claimable: bool, limit: int,
          after_id: int | None) -> list[SimpleNamespace]:
    """Open tasks assigned to the user or, unassigned, open to one of ``roles`` (None: every open task),
    oldest first; each with ``instance_version`` and ``instance`` (process key, business key)."""
    query = _INBOX
    if roles is not None:
        mine = _tasks.c.assignee_id == user_id
        if include_claimable:
            role_match = _tasks.c.candidate_role.in_(roles) | _tasks.c.candidate_role.is_(None)
            mine = mine | (_tasks.c.assignee_id.is_(None) & role_match)
        query = query.where(mine)
    if after_id is not None:
        query = query.where(_tasks.c.id > after_id)
    rows = []
    for row in _conn().execute(query.order_by(_tasks.c.id).limit(limit)):
        values = row._mapping
        task = SimpleNamespace(**{c.name: values[c.name] for c in _tasks.c})
        task.instance_version = values["instance__version"]
        task.instance = SimpleNamespace(id=task.instance_id, version=task.instance_version,
                                        process_key=values["instance__process_key"],
                                        business_key=values["instance__business_key"])
        rows.append(task)
    return rows


def incidents(instance_id: int) -> list[SimpleNamespace]:
    """Every incident of an instance, oldest first."""
    return _all(_INCIDENTS, {"iid": instance_id})
