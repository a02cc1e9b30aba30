"""Process services: deploy, start, complete, claim, fire timers, deliver
messages, suspend/resume/terminate/retry, and the read side (inboxes,
instance views, audit). Services flush but never commit: the caller's
``transaction()`` commits once at the edge. They raise only our own errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from flask import current_app
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer
from sqlalchemy.orm.exc import StaleDataError

from ..auth.models import ROLES, User
from ..db import flush_queued_inserts, queue_insert, utcnow
from ..engine import (
    BpmnValidationError,
    Engine,
    NoMessageWaiting,
    RunResult,
    TaskNotReady,
    VersionRef,
    parse_bundle,
)
from ..errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ..extensions import db
from . import store
from .models import (
    AuditEvent,
    HumanTask,
    Incident,
    MessageSubscription,
    ProcessInstance,
    ProcessVersion,
    Timer,
)

BUNDLE_SUFFIXES = (".bpmn", ".dmn")

# -- engine & helpers ---------------------------------------------------------
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


def _ref(instance) -> VersionRef:
    return version_ref(instance.process_version_id, instance.process_key, instance.dialect)


def record_audit(event: str, instance=None, *, actor: User | None = None, client: str | None = None,
                 element_id: str | None = None, data: dict | None = None) -> None:
    """Append one audit event (never updated or deleted); written in one batched INSERT."""
    queue_insert(AuditEvent, {
        "instance_id": instance,  # resolved to its id when the batch is written (it may not have one yet)
        "event": event, "element_id": element_id, "actor_id": actor.id if actor is not None else None,
        "client": (client or "")[:300] or None, "data": data, "created_at": utcnow(),
    })


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


# -- forms --------------------------------------------------------------------
_form_cache: dict[Path, tuple[float, Draft202012Validator]] = {}


def form_path(form_key: str) -> Path:
    """Where the JSON schema for a form key lives."""
    return Path(current_app.config["FORMS_DIR"]) / f"{form_key}.schema.json"


def form_validator(form_key: str) -> Draft202012Validator:
    """Load (and cache by mtime) the validator for a form key."""
    path = form_path(form_key)
    if "/" in form_key or "\\" in form_key or not path.is_file():
        raise ValidationFailed(f"the form '{form_key}' does not exist in forms/",
                               errors=[{"field": None, "message": f"missing forms/{form_key}.schema.json"}])
    mtime = path.stat().st_mtime
    cached = _form_cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
    except (ValueError, SchemaError) as err:
        raise ValidationFailed(f"the form schema forms/{form_key}.schema.json is invalid: {err}") from None
    validator = Draft202012Validator(schema)
    _form_cache[path] = (mtime, validator)
    return validator


def validate_form_data(form_key: str | None, data: dict) -> None:
    """Raise ValidationFailed listing every field that breaks the task's form schema."""
    if not form_key:
        return
    errors = []
    for error in sorted(form_validator(form_key).iter_errors(data), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            for name in missing:
                errors.append({"field": f"{path}.{name}" if path else name, "message": "is required"})
            continue
        errors.append({"field": path or None, "message": error.message})
    if errors:
        raise ValidationFailed(f"the submitted data does not match the form '{form_key}'", errors=errors)


# -- deploy -------------------------------------------------------------------
def validate_bundle(files: dict[str, bytes], *, make_executable: bool = False):
    """Parse and check a bundle without deploying; returns the parsed bundle (with its warnings).
    ``make_executable``: take processes marked ``isExecutable="false"`` as executable."""
    for name in files:
        if not name.endswith(BUNDLE_SUFFIXES) or "/" in name or "\\" in name or name.startswith("."):
            raise BpmnValidationError("only .bpmn and .dmn file names (without folders) are accepted", name)
    bundle, _ = parse_bundle(files, current_app.config["BPMN_MAX_FILE_BYTES"], make_executable=make_executable)
    for process in bundle.processes:
        for element_id, form_key in process.form_keys.items():
            if not form_path(form_key).is_file() or "/" in form_key:
                raise BpmnValidationError(f"the user task asks for form '{form_key}', which is not in forms/",
                                          process.file_name, element_id)
    return bundle


def deploy_bundle(files: dict[str, bytes], *, source: str = "api", actor: User | None = None,
                  client: str | None = None, make_executable: bool = False) -> list[dict]:
    """Deploy a bundle: each process whose content changed gets a new immutable version. Each result
    carries the warnings of its files (what deploying had to assume)."""
    bundle = validate_bundle(files, make_executable=make_executable)
    results = []
    for process in bundle.processes:
        latest = latest_version(process.process_id)
        if latest is not None and latest.content_hash == process.content_hash:
            results.append({"process_key": process.process_id, "version": latest.version, "created": False,
                            "id": latest.id, "warnings": process.warnings})
            continue
        pv = ProcessVersion(
            process_key=process.process_id, version=(latest.version + 1) if latest else 1, name=process.name,
            dialect=bundle.dialect, file_name=process.file_name, content_hash=process.content_hash,
            files=process.files, source=source, deployed_by_id=actor.id if actor else None,
        )
        db.session.add(pv)
        try:
            db.session.flush()
        except IntegrityError:
            raise Conflict(f"process '{process.process_id}' was deployed concurrently; try again") from None
        record_audit("deployed", actor=actor, client=client, element_id=process.process_id,
                     data={"version": pv.version, "file": process.file_name, "hash": process.content_hash,
                           "warnings": len(process.warnings)})
        results.append({"process_key": pv.process_key, "version": pv.version, "created": True, "id": pv.id,
                        "warnings": process.warnings})
    store.forget_versions()
    return results


def read_bundle_dir(path: str | Path) -> dict[str, bytes]:
    """Read every .bpmn/.dmn file of a folder into a bundle."""
    folder = Path(path)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in BUNDLE_SUFFIXES}


def deploy_directory(path: str | Path | None = None, *, actor: User | None = None) -> list[dict]:
    """Deploy the workflows folder (at startup and by CLI)."""
    files = read_bundle_dir(path or current_app.config["WORKFLOWS_DIR"])
    if not files:
        return []
    return deploy_bundle(files, source="folder", actor=actor)


def latest_version(process_key: str) -> ProcessVersion | None:
    """The newest version of a process, or None."""
    return db.session.scalars(select(ProcessVersion).where(ProcessVersion.process_key == process_key)
                              .order_by(ProcessVersion.version.desc()).limit(1)).first()


def get_version(process_key: str, version: int | None = None) -> ProcessVersion:
    """A given (or the latest) version of a process; NotFound if absent."""
    if version is None:
        pv = latest_version(process_key)
    else:
        pv = db.session.scalars(select(ProcessVersion).where(
            ProcessVersion.process_key == process_key, ProcessVersion.version == version)).first()
    if pv is None:
        raise NotFound(f"process '{process_key}'" + (f" version {version}" if version else "") + " is not deployed")
    return pv


def list_processes() -> list[dict]:
    """Every process with its latest version and how many versions exist."""
    rows = db.session.scalars(select(ProcessVersion).order_by(ProcessVersion.process_key,
                                                              ProcessVersion.version)).all()
    by_key: dict[str, dict] = {}
    for pv in rows:
        by_key[pv.process_key] = {"process_key": pv.process_key, "name": pv.name, "latest_version": pv.version,
                                  "versions": by_key.get(pv.process_key, {}).get("versions", 0) + 1,
                                  "deployed_at": pv.deployed_at}
    return list(by_key.values())


def list_versions(process_key: str) -> list[ProcessVersion]:
    """All versions of a process, newest first."""
    rows = db.session.scalars(select(ProcessVersion).where(ProcessVersion.process_key == process_key)
                              .order_by(ProcessVersion.version.desc())).all()
    if not rows:
        raise NotFound(f"process '{process_key}' is not deployed")
    return list(rows)


def version_xml(process_key: str, version: int | None = None) -> tuple[str, str]:
    """Return ``(file name, XML)`` of the file defining the process in that version."""
    pv = get_version(process_key, version)
    files = db.session.get(ProcessVersion, pv.id, options=[undefer(ProcessVersion.files)]).files
    return pv.file_name, files[pv.file_name]


# -- instances ------------------------------------------------------------------
def start_instance(process_key: str, data: dict | None = None, *, version: int | None = None,
                   business_key: str | None = None, actor: User | None = None,
                   client: str | None = None) -> dict:
    """Start an instance of the latest (or a given) version and run it to its first wait; returns its view."""
    pv = store.version_row(process_key, version)
    if pv is None:
        raise NotFound(f"process '{process_key}'" + (f" version {version}" if version else "") + " is not deployed")
    engine = get_engine()
    result = engine.start(version_ref(pv.id, pv.process_key, pv.dialect), data or {})
    now = utcnow()
    instance = SimpleNamespace(
        id=None, process_version_id=pv.id, process_key=pv.process_key, process_version_number=pv.version,
        dialect=pv.dialect, business_key=business_key, status="running", version=0, state=None, data={},
        active_element_ids=[], incident_count=0, serializer_version=engine.serializer_version,
        started_by_id=actor.id if actor else None, started_at=now, updated_at=now, ended_at=None,
    )
    record_audit("started", instance, actor=actor, client=client,
                 data={"version": pv.version, "input": data or {}, "business_key": business_key})
    return _apply_result(instance, result, actor=actor, client=client, is_new=True)


def _flush() -> None:
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


def _require_version(instance: ProcessInstance, expected_version: int | None) -> None:
    if expected_version is not None and instance.version != expected_version:
        raise Conflict(f"instance {instance.id} is at version {instance.version}, not {expected_version}; "
                       "reload and try again", current_version=instance.version)


def lock_instance(instance_id: int) -> None:
    """Take the instance's row lock for this transaction before writing anything of it or its domain rows
    (see ``store.lock_instance``); domain services call this before changing their own rows and then
    advancing the process."""
    if store.lock_instance(instance_id) is None:
        raise NotFound(f"instance {instance_id} does not exist")


def _load_instance(instance_id: int, *, lock: bool = False):
    if lock:
        lock_instance(instance_id)
    instance = store.load_instance(instance_id)
    if instance is None:
        raise NotFound(f"instance {instance_id} does not exist")
    return instance


def _apply_result(instance, result: RunResult, *, actor: User | None = None, client: str | None = None,
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


# -- human tasks ----------------------------------------------------------------
def get_task(task_id: int) -> HumanTask:
    """Load a human task or raise NotFound."""
    task = db.session.get(HumanTask, task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist")
    return task


def can_act_on(task: HumanTask, user: User) -> bool:
    """Whether a user may claim or complete a task (assignee, candidate role, or admin)."""
    if user.has_role("admin"):
        return True
    if task.assignee_id is not None:
        return task.assignee_id == user.id
    return task.candidate_role is None or task.candidate_role in user.roles


def inbox(user: User, *, include_claimable: bool = True, limit: int = 100, after_id: int | None = None) -> list:
    """Open tasks for a user: assigned to them, or unassigned for one of their roles (one SQL query).

    Rows are plain namespaces with the task's columns, ``instance_version`` and ``instance`` (its
    process key and business key): every page and phone polls this, so it skips the ORM."""
    roles = None if user.has_role("admin") else list(user.roles)
    return store.inbox(user.id, roles, include_claimable=include_claimable, limit=limit, after_id=after_id)


def claim_task(task_id: int, actor: User, *, client: str | None = None) -> HumanTask:
    """Take an unassigned task (guarded update: two claims cannot both win)."""
    task = get_task(task_id)
    if task.status != "open":
        raise Conflict(f"task {task_id} is {task.status}")
    if not can_act_on(task, actor):
        raise PermissionDenied("this task is for another role or person")
    if task.assignee_id == actor.id:
        return task
    if task.assignee_id is not None:
        raise Conflict(f"task {task_id} is already claimed")
    won = db.session.execute(update(HumanTask).where(HumanTask.id == task_id, HumanTask.assignee_id.is_(None),
                                                     HumanTask.status == "open")
                             .values(assignee_id=actor.id).execution_options(synchronize_session=False))
    if won.rowcount != 1:
        raise Conflict(f"task {task_id} was claimed by someone else")
    db.session.refresh(task)
    record_audit("task_claimed", task.instance, actor=actor, client=client, element_id=task.element_id,
                 data={"task_id": task.id})
    return task


def assign_task(task_id: int, assignee_id: int | None, actor: User, *, client: str | None = None) -> HumanTask:
    """Assign (or unassign with None) a task; managers/admins/designers only."""
    task = get_task(task_id)
    if task.status != "open":
        raise Conflict(f"task {task_id} is {task.status}")
    if assignee_id is not None:
        assignee = db.session.get(User, assignee_id)
        if assignee is None:
            raise ValidationFailed("no such user", errors=[{"field": "assignee_id", "message": "unknown user"}])
        if task.candidate_role and not assignee.has_role(task.candidate_role):
            raise ValidationFailed("the user does not hold the task's role",
                                   errors=[{"field": "assignee_id", "message": f"needs role {task.candidate_role}"}])
    task.assignee_id = assignee_id
    record_audit("task_assigned", task.instance, actor=actor, client=client, element_id=task.element_id,
                 data={"task_id": task.id, "assignee_id": assignee_id})
    return task


def complete_task(task_id: int, data: dict, actor: User, *, expected_version: int | None = None,
                  client: str | None = None) -> dict:
    """Validate the form data, complete the task and advance the engine (409 when stale)."""
    loaded = store.load_task_with_instance(task_id)
    if loaded is not None and store.lock_instance(loaded[1].id) != loaded[1].version:
        loaded = store.load_task_with_instance(task_id)  # it moved on before we held the lock: read it again
    if loaded is None:
        raise NotFound(f"task {task_id} does not exist")
    task, instance = loaded
    if task.status != "open":
        raise Conflict(f"task {task_id} is already {task.status}")
    if not can_act_on(task, actor):
        raise PermissionDenied("this task is assigned to someone else or needs another role")
    if instance.status != "running":
        raise Conflict(f"instance {instance.id} is {instance.status}; the task cannot be completed now")
    _require_version(instance, expected_version)
    validate_form_data(task.form_key, data)
    try:
        result = get_engine().complete_task(_ref(instance), instance.state, task.task_guid, data)
    except TaskNotReady:
        raise Conflict(f"task {task_id} is no longer ready") from None
    # Guarded: only one completion can move the task out of 'open'.
    if not store.close_task(task.id, actor.id, utcnow()):
        raise Conflict(f"task {task_id} was completed by someone else")
    record_audit("task_completed", instance, actor=actor, client=client, element_id=task.element_id,
                 data={"task_id": task.id, "data": data})
    return _apply_result(instance, result, actor=actor, client=client, completed_guid=task.task_guid)


# -- timers ---------------------------------------------------------------------
class TimerNotDue(Exception):
    """The engine did not consider the timer due yet (clock skew); deliver later."""


def fire_timer(timer_id: int) -> bool:
    """Fire one timer exactly once: guarded ``fired_at IS NULL`` update plus the instance version.

    Returns False (and changes nothing) when it already fired, was cancelled, is not due,
    or its instance is not running.
    """
    timer = store.load_timer(timer_id)
    if timer is None or timer.fired_at is not None or timer.cancelled_at is not None:
        return False
    now = utcnow()
    if timer.due_at > now:
        return False
    instance = _load_instance(timer.instance_id, lock=True)  # the instance row first, then the timer row
    if instance.status != "running" or not store.claim_timer(timer_id, now):
        return False
    result = get_engine().fire_timers(_ref(instance), instance.state)
    if any(t.guid == timer.task_guid and t.due_at == timer.due_at for t in result.timers):
        raise TimerNotDue(timer_id)
    record_audit("timer_fired", instance, element_id=timer.element_id,
                 data={"timer_id": timer.id, "due_at": timer.due_at.isoformat()})
    _apply_result(instance, result, fired_timer_id=timer.id)
    from ..observability import TIMER_LATENESS  # what it loaded already: no query of its own

    TIMER_LATENESS.observe(max(0.0, (now - timer.due_at).total_seconds()))
    return True


def due_timer_ids(now=None, limit: int = 5000) -> list[int]:
    """Ids of unfired, uncancelled timers due by ``now`` whose instance is running."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Timer.id).join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
        .where(Timer.fired_at.is_(None), Timer.cancelled_at.is_(None), Timer.due_at <= now,
               ProcessInstance.status == "running")
        .order_by(Timer.due_at).limit(limit))
    return [row[0] for row in rows]


# -- messages ---------------------------------------------------------------------
def deliver_message(name: str, correlation_key: str | None, payload: dict | None = None, *,
                    actor: User | None = None, client: str | None = None) -> list[int]:
    """Correlate a message (name + key) to the instances waiting for it and advance them."""
    query = select(MessageSubscription.instance_id).where(MessageSubscription.message_name == name)
    if correlation_key is not None:
        query = query.where(MessageSubscription.correlation_key == correlation_key)
    instance_ids = sorted(set(db.session.scalars(query)))
    if not instance_ids:
        raise NotFound(f"no instance waits for message '{name}'"
                       + (f" with key '{correlation_key}'" if correlation_key is not None else ""))
    delivered = []
    for instance_id in instance_ids:
        instance = _load_instance(instance_id, lock=True)
        if instance.status != "running":
            continue
        try:
            result = get_engine().deliver_message(_ref(instance), instance.state, name, payload or {})
        except NoMessageWaiting:
            continue
        record_audit("message_received", instance, actor=actor, client=client,
                     data={"name": name, "correlation_key": correlation_key, "payload": payload or {}})
        _apply_result(instance, result, actor=actor, client=client)
        delivered.append(instance_id)
    if not delivered:
        raise Conflict(f"the instances waiting for '{name}' cannot take it now (suspended or in error)")
    return delivered


# -- lifecycle --------------------------------------------------------------------
def suspend_instance(instance_id: int, actor: User, *, expected_version: int | None = None,
                     client: str | None = None) -> ProcessInstance:
    """Pause an instance: its tasks cannot be completed and its timers wait until resumed."""
    instance = get_instance(instance_id)
    _require_version(instance, expected_version)
    if instance.status not in ("running", "error"):
        raise Conflict(f"instance {instance_id} is {instance.status}")
    instance.status = "suspended"
    record_audit("suspended", instance, actor=actor, client=client)
    _flush()
    return instance


def resume_instance(instance_id: int, actor: User, *, expected_version: int | None = None,
                    client: str | None = None) -> ProcessInstance:
    """Resume a suspended instance (back into error if an incident is still open)."""
    instance = get_instance(instance_id)
    _require_version(instance, expected_version)
    if instance.status != "suspended":
        raise Conflict(f"instance {instance_id} is {instance.status}, not suspended")
    open_incident = db.session.scalars(select(Incident.id).where(
        Incident.instance_id == instance_id, Incident.resolved_at.is_(None))).first()
    instance.status = "error" if open_incident else "running"
    record_audit("resumed", instance, actor=actor, client=client)
    _flush()
    return instance


def terminate_instance(instance_id: int, actor: User, *, expected_version: int | None = None,
                       reason: str | None = None, client: str | None = None) -> ProcessInstance:
    """Stop an instance for good: cancel its tasks, timers and message waits."""
    lock_instance(instance_id)
    instance = get_instance(instance_id, with_state=True)
    _require_version(instance, expected_version)
    if instance.status in ("completed", "terminated"):
        raise Conflict(f"instance {instance_id} is already {instance.status}")
    now = utcnow()
    instance.state = get_engine().cancel(version_ref(instance.process_version_id, instance.process_key,
                                                     instance.process_version.dialect), instance.state)
    instance.status = "terminated"
    instance.ended_at = now
    instance.active_element_ids = []
    db.session.execute(update(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
                       .values(status="cancelled", completed_at=now).execution_options(synchronize_session=False))
    db.session.execute(update(Timer).where(Timer.instance_id == instance_id, Timer.fired_at.is_(None),
                                           Timer.cancelled_at.is_(None))
                       .values(cancelled_at=now).execution_options(synchronize_session=False))
    for sub in db.session.scalars(select(MessageSubscription).where(MessageSubscription.instance_id == instance_id)):
        db.session.delete(sub)
    record_audit("terminated", instance, actor=actor, client=client, data={"reason": reason})
    _flush()
    return instance


def retry_instance(instance_id: int, actor: User, *, data: dict | None = None, to_latest: bool = False,
                   expected_version: int | None = None, client: str | None = None) -> dict:
    """Re-run the failed step of an instance in error, with corrected data and/or moved to the latest
    deployed version of its process (when every element it has reached still exists there)."""
    instance = _load_instance(instance_id, lock=True)
    _require_version(instance, expected_version)
    if instance.status != "error":
        raise Conflict(f"instance {instance_id} is {instance.status}, not in error")
    engine = get_engine()
    if to_latest:
        _move_to_latest(instance, engine, actor, client)
    result = engine.retry(_ref(instance), instance.state, data)
    store.update_rows("incidents", [i.id for i in store.incidents(instance_id) if i.resolved_at is None],
                      resolved_at=utcnow())
    instance.status = "running"
    record_audit("retried", instance, actor=actor, client=client, data={"data": data or {}})
    return _apply_result(instance, result, actor=actor, client=client)


def _move_to_latest(instance, engine: Engine, actor: User | None, client: str | None) -> None:
    latest = store.version_row(instance.process_key, None)
    if latest.id == instance.process_version_id:
        return
    missing = engine.missing_elements(version_ref(latest.id, latest.process_key, latest.dialect), instance.state)
    if missing:
        raise Conflict(f"version {latest.version} lacks elements this instance has reached: {', '.join(missing)}",
                       errors=[{"element_id": name, "message": "missing in the new version"} for name in missing])
    record_audit("migrated", instance, actor=actor, client=client,
                 data={"from_version": instance.process_version_number, "to_version": latest.version})
    store.move_instance(instance.id, latest.id)
    instance.process_version_id, instance.process_version_number = latest.id, latest.version
    instance.dialect = latest.dialect


# -- read side ------------------------------------------------------------------------
def list_instances(*, process_key: str | None = None, status: str | None = None,
                   business_key: str | None = None, limit: int = 50, after_id: int | None = None):
    """Instances filtered by process, status and business key, newest first, cursor by id."""
    query = select(ProcessInstance)
    if process_key:
        query = query.where(ProcessInstance.process_key == process_key)
    if status:
        query = query.where(ProcessInstance.status == status)
    if business_key:
        query = query.where(ProcessInstance.business_key == business_key)
    if after_id is not None:
        query = query.where(ProcessInstance.id < after_id)
    return db.session.scalars(query.order_by(ProcessInstance.id.desc()).limit(limit)).all()


def instance_view(instance_id: int) -> dict:
    """An instance with its open tasks, pending timers, open incidents and message waits."""
    instance = get_instance(instance_id)
    tasks = db.session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                       HumanTask.status == "open")).all()
    timers = db.session.scalars(select(Timer).where(Timer.instance_id == instance_id, Timer.fired_at.is_(None),
                                                    Timer.cancelled_at.is_(None))).all()
    incidents = db.session.scalars(select(Incident).where(Incident.instance_id == instance_id)
                                   .order_by(Incident.id)).all()
    subs = db.session.scalars(select(MessageSubscription).where(
        MessageSubscription.instance_id == instance_id)).all()
    return {"instance": instance, "tasks": tasks, "timers": timers, "incidents": incidents, "messages": subs}


def instance_counts(process_key: str) -> dict[str, int]:
    """How many instances of a process are in each status."""
    rows = db.session.execute(select(ProcessInstance.status, func.count()).where(
        ProcessInstance.process_key == process_key).group_by(ProcessInstance.status)).all()
    return {status: count for status, count in rows}


def element_states(instance_id: int) -> dict[str, list[str]]:
    """An instance's completed, active and failed (open incident) elements, for its diagram."""
    instance = get_instance(instance_id, with_state=True)
    states = {"completed": [], "active": []}
    if instance.state:
        pv = db.session.get(ProcessVersion, instance.process_version_id)
        states = get_engine().element_states(version_ref(pv.id, pv.process_key, pv.dialect), instance.state)
    failed = db.session.scalars(select(Incident.element_id).where(
        Incident.instance_id == instance_id, Incident.resolved_at.is_(None), Incident.element_id.is_not(None))).all()
    return {**states, "failed": sorted(set(failed))}


def audit_trail(instance_id: int) -> list[AuditEvent]:
    """Every audit event of an instance, oldest first."""
    get_instance(instance_id)
    return db.session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                              .order_by(AuditEvent.id)).all()

