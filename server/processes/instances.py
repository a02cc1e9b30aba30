"""Process instances: start, the lifecycle (suspend, resume, terminate, retry — also onto the latest
version) and the read side (lists, views, counts, element states for the diagram)."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import func, select, update

from ..auth.models import User
from ..db import utcnow
from ..engine import Engine
from ..errors import Conflict, NotFound
from ..extensions import db
from . import store
from .audit import record_audit
from .models import AuditEvent, HumanTask, Incident, MessageSubscription, ProcessInstance, ProcessVersion, Timer
from .runs import (
    apply_result,
    flush_changes,
    get_engine,
    get_instance,
    instance_ref,
    load_instance,
    lock_instance,
    require_version,
    version_ref,
)


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
    return apply_result(instance, result, actor=actor, client=client, is_new=True)


def suspend_instance(instance_id: int, actor: User, *, expected_version: int | None = None,
                     client: str | None = None) -> ProcessInstance:
    """Pause an instance: its tasks cannot be completed and its timers wait until resumed."""
    instance = get_instance(instance_id)
    require_version(instance, expected_version)
    if instance.status not in ("running", "error"):
        raise Conflict(f"instance {instance_id} is {instance.status}")
    instance.status = "suspended"
    record_audit("suspended", instance, actor=actor, client=client)
    flush_changes()
    return instance


def resume_instance(instance_id: int, actor: User, *, expected_version: int | None = None,
                    client: str | None = None) -> ProcessInstance:
    """Resume a suspended instance (back into error if an incident is still open)."""
    instance = get_instance(instance_id)
    require_version(instance, expected_version)
    if instance.status != "suspended":
        raise Conflict(f"instance {instance_id} is {instance.status}, not suspended")
    open_incident = db.session.scalars(select(Incident.id).where(
        Incident.instance_id == instance_id, Incident.resolved_at.is_(None))).first()
    instance.status = "error" if open_incident else "running"
    record_audit("resumed", instance, actor=actor, client=client)
    flush_changes()
    return instance


def terminate_instance(instance_id: int, actor: User, *, expected_version: int | None = None,
                       reason: str | None = None, client: str | None = None) -> ProcessInstance:
    """Stop an instance for good: cancel its tasks, timers and message waits."""
    lock_instance(instance_id)
    instance = get_instance(instance_id, with_state=True)
    require_version(instance, expected_version)
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
    flush_changes()
    return instance


def retry_instance(instance_id: int, actor: User, *, data: dict | None = None, to_latest: bool = False,
                   expected_version: int | None = None, client: str | None = None) -> dict:
    """Re-run the failed step of an instance in error, with corrected data and/or moved to the latest
    deployed version of its process (when every element it has reached still exists there)."""
    instance = load_instance(instance_id, lock=True)
    require_version(instance, expected_version)
    if instance.status != "error":
        raise Conflict(f"instance {instance_id} is {instance.status}, not in error")
    engine = get_engine()
    if to_latest:
        _move_to_latest(instance, engine, actor, client)
    result = engine.retry(instance_ref(instance), instance.state, data)
    store.update_rows("incidents", [i.id for i in store.incidents(instance_id) if i.resolved_at is None],
                      resolved_at=utcnow())
    instance.status = "running"
    record_audit("retried", instance, actor=actor, client=client, data={"data": data or {}})
    return apply_result(instance, result, actor=actor, client=client)


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

