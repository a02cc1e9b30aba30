"""Running the engine for an instance and persisting what it did: the app's engine, version
references, instance loading and locking, and ``apply_result`` — the instance row (guarded by its
version) plus the human tasks, timers, message waits and incident mirrored from the run.

Every service that advances an instance goes through here. Services flush but never commit: the
caller's ``transaction()`` commits once at the edge."""

from __future__ import annotations

from types import SimpleNamespace

from flask import current_app
from sqlalchemy.orm import undefer
from sqlalchemy.orm.exc import StaleDataError

from ..auth.models import ROLES, User
from ..db import flush_queued_inserts, utcnow
from ..engine import Engine, RunResult, VersionRef
from ..errors import Conflict, NotFound
from ..extensions import db
from . import store
from .audit import record_audit
from .models import ProcessInstance, ProcessVersion


def get_engine() -> Engine:
    """The app's engine (one per process; holds the per-version spec cache)."""
    engine = current_app.extensions.get("flowdesk_engine")
    if engine is None:
        cfg = current_app.config
        engine = Engine(cfg["ENGINE_STEP_LIMIT"], cfg["ENGINE_TIME_LIMIT"], cfg["SCRIPT_TIME_LIMIT"])
        current_app.extensions["flowdesk_engine"] = engine
    return engine


def version_ref(version_id: int, process_key: str, dialect: str) -> VersionRef:
    """Describe a stored version to the engine; its files load only on a spec-cache miss."""
    return VersionRef(version_id, process_key, dialect,
                      lambda: db.session.get(ProcessVersion, version_id, options=[undefer(ProcessVersion.files)]).files)


def instance_ref(instance) -> VersionRef:
    """The engine's reference to the version an instance runs on."""
    return version_ref(instance.process_version_id, instance.process_key, instance.dialect)


def _role_for_lane(lane: str | None) -> str | None:
    if not lane:
        return None
    mapping = current_app.config.get("LANE_ROLES", {})
    normalised = lane.strip().lower().replace(" ", "_").replace("-", "_")
    if normalised in mapping:
        return mapping[normalised]
    if normalised in ROLES:
        return normalised
    if normalised.endswith("s") and normalised[:-1] in ROLES:
        return normalised[:-1]
    return None


def flush_changes() -> None:
    """Write pending changes now (so a stale version is a Conflict here), then the audit batch."""
    try:
        db.session.flush()
    except StaleDataError:
        raise Conflict("the instance was changed by someone else; reload and try again") from None
    flush_queued_inserts()


def get_instance(instance_id: int, *, with_state: bool = False) -> ProcessInstance:
    """Load an instance or raise NotFound."""
    options = [undefer(ProcessInstance.state)] if with_state else []
    instance = db.session.get(ProcessInstance, instance_id, options=options)
    if instance is None:
        raise NotFound(f"instance {instance_id} does not exist")
    if with_state and "state" not in instance.__dict__:
        db.session.refresh(instance, ["state"])
    return instance


def require_version(instance: ProcessInstance, expected_version: int | None) -> None:
    """Conflict (409) when the caller saw another version of the instance than the stored one."""
    if expected_version is not None and instance.version != expected_version:
        raise Conflict(f"instance {instance.id} is at version {instance.version}, not {expected_version}; "
                       "reload and try again", current_version=instance.version)


def lock_instance(instance_id: int) -> None:
    """Take the instance's row lock for this transaction before writing anything of it or its domain rows
    (see ``store.lock_instance``); domain services call this before changing their own rows and then
    advancing the process."""
    if store.lock_instance(instance_id) is None:
        raise NotFound(f"instance {instance_id} does not exist")


def load_instance(instance_id: int, *, lock: bool = False):
    """An instance's row with its state as a namespace (row-locked first with ``lock``), or NotFound."""
    if lock:
        lock_instance(instance_id)
    instance = store.load_instance(instance_id)
    if instance is None:
        raise NotFound(f"instance {instance_id} does not exist")
    return instance


def apply_result(instance, result: RunResult, *, actor: User | None = None, client: str | None = None,
                 fired_timer_id: int | None = None, is_new: bool = False, completed_guid: str | None = None) -> dict:
    """Persist a run: the instance row (guarded by its version), then the mirrored tasks, timers,
    subscriptions and incident. Returns the instance view, built from what was just written."""
    now = utcnow()
    instance.state, instance.data = result.state, result.data
    instance.active_element_ids = result.active_element_ids
    instance.updated_at = now
    if result.incident is not None:
        instance.status = "error"
        instance.incident_count += 1
    elif result.completed:
        instance.status, instance.ended_at = "completed", now
    values = {name: getattr(instance, name) for name in store.RUN_FIELDS}
    if is_new:
        instance.version = 1
        instance.id = store.insert_instance({
            **values, "version": 1, "process_version_id": instance.process_version_id,
            "process_key": instance.process_key, "business_key": instance.business_key,
            "serializer_version": instance.serializer_version, "started_by_id": instance.started_by_id,
            "started_at": instance.started_at})
    elif store.update_instance(instance.id, instance.version, values):
        instance.version += 1
    else:
        raise Conflict("the instance was changed by someone else; reload and try again")
    incidents = store.incidents(instance.id) if instance.incident_count > (result.incident is not None) else []
    if result.incident is not None:
        info = result.incident
        row = {"instance_id": instance.id, "element_id": info.element_id, "task_guid": info.task_guid,
               "message": info.message, "line": info.line, "created_at": now, "resolved_at": None}
        incidents.append(SimpleNamespace(id=store.insert_row("incidents", row), **row))
        record_audit("error", instance, actor=actor, client=client, element_id=info.element_id,
                     data={"message": info.message, "line": info.line})
    elif result.completed:
        record_audit("completed", instance, actor=actor, client=client)
    other_tasks_before = (result.human_guids_before or set()) - {completed_guid}
    view = {
        "instance": instance,
        "tasks": _sync_human_tasks(instance, result, now, check_existing=not is_new and bool(other_tasks_before)),
        "timers": _sync_timers(instance, result, now, actor, client, fired_timer_id,
                               check_existing=not is_new and result.had_timers),
        "messages": _sync_subscriptions(instance, result, check_existing=not is_new and result.had_messages),
        "incidents": incidents,
    }
    for message in result.thrown_messages:
        record_audit("message_thrown", instance, data=message)
    return view


def _sync_human_tasks(instance, result: RunResult, now, check_existing: bool) -> list:
    open_tasks = {t.task_guid: t for t in store.open_tasks(instance.id)} if check_existing else {}
    ready = {info.guid: info for info in result.human_tasks}
    store.update_rows("human_tasks", [t.id for g, t in open_tasks.items() if g not in ready],
                      status="cancelled", completed_at=now)
    current = []
    for guid, info in ready.items():
        task = open_tasks.get(guid)
        if task is not None:
            if task.due_at != info.due_at:
                store.update_rows("human_tasks", [task.id], due_at=info.due_at)
                task.due_at = info.due_at
        else:
            row = {"instance_id": instance.id, "task_guid": guid, "element_id": info.element_id, "name": info.name,
                   "lane": info.lane, "form_key": info.form_key,
                   "candidate_role": info.candidate_role or _role_for_lane(info.lane), "assignee_id": info.assignee_id,
                   "status": "open", "due_at": info.due_at, "created_at": now, "completed_at": None,
                   "completed_by_id": None}
            task = SimpleNamespace(id=store.insert_row("human_tasks", row), **row)
        task.instance_version = instance.version
        current.append(task)
    return current


def _sync_timers(instance, result: RunResult, now, actor, client, fired_timer_id, check_existing: bool) -> list:
    pending = store.pending_timers(instance.id) if check_existing else []
    waiting = {(t.guid, t.due_at): t for t in result.timers}
    waiting_guids = {t.guid for t in result.timers}
    current, fired_ids, cancelled_ids = [], [], []
    for row in pending:
        key = (row.task_guid, row.due_at)
        if key in waiting:
            current.append(row)
            waiting.pop(key)
            continue
        # Gone from the waits: it fired inside this run (task completed, or a cycle moved on), or it was cancelled.
        fired = row.due_at <= now and (row.task_guid in result.fired_timer_guids or row.task_guid in waiting_guids)
        if fired and row.id != fired_timer_id:
            fired_ids.append(row.id)
            record_audit("timer_fired", instance, actor=actor, client=client, element_id=row.element_id,
                         data={"timer_id": row.id, "due_at": row.due_at.isoformat()})
        elif not fired:
            cancelled_ids.append(row.id)
    store.update_rows("timers", fired_ids, fired_at=now)
    store.update_rows("timers", cancelled_ids, cancelled_at=now)
    for info in waiting.values():
        row = {"instance_id": instance.id, "task_guid": info.guid, "element_id": info.element_id, "kind": info.kind,
               "due_at": info.due_at, "created_at": now, "fired_at": None, "cancelled_at": None, "attempts": 0}
        current.append(SimpleNamespace(id=store.insert_row("timers", row), **row))
    for info in result.instant_timers:  # already due when reached: fired in this run, a row for the record
        row = {"instance_id": instance.id, "task_guid": info.guid, "element_id": info.element_id, "kind": info.kind,
               "due_at": info.due_at, "created_at": now, "fired_at": now, "cancelled_at": None, "attempts": 1}
        timer_id = store.insert_row("timers", row)
        record_audit("timer_fired", instance, actor=actor, client=client, element_id=info.element_id,
                     data={"timer_id": timer_id, "due_at": info.due_at.isoformat()})
    return current


def _sync_subscriptions(instance, result: RunResult, check_existing: bool) -> list:
    existing = {(s.task_guid, s.message_name): s for s in store.subscriptions(instance.id)} if check_existing else {}
    current = []
    for info in result.messages:
        sub = existing.pop((info.guid, info.message_name), None)
        if sub is None:
            row = {"instance_id": instance.id, "task_guid": info.guid, "element_id": info.element_id,
                   "message_name": info.message_name, "correlation_key": instance.business_key,
                   "created_at": utcnow()}
            sub = SimpleNamespace(id=store.insert_row("message_subscriptions", row), **row)
        current.append(sub)
    store.delete_rows("message_subscriptions", [sub.id for sub in existing.values()])
    return current

