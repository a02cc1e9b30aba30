"""Human tasks: who may act on them, inboxes, claim, assign and complete (which advances the engine)."""

from __future__ import annotations

from sqlalchemy import update

from ..auth.models import User
from ..db import utcnow
from ..engine import TaskNotReady
from ..errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ..extensions import db
from . import store
from .audit import record_audit
from .forms import validate_form_data
from .models import HumanTask
from .runs import apply_result, get_engine, instance_ref, require_version


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
    require_version(instance, expected_version)
    validate_form_data(task.form_key, data)
    try:
        result = get_engine().complete_task(instance_ref(instance), instance.state, task.task_guid, data)
    except TaskNotReady:
        raise Conflict(f"task {task_id} is no longer ready") from None
    # Guarded: only one completion can move the task out of 'open'.
    if not store.close_task(task.id, actor.id, utcnow()):
        raise Conflict(f"task {task_id} was completed by someone else")
    record_audit("task_completed", instance, actor=actor, client=client, element_id=task.element_id,
                 data={"task_id": task.id, "data": data})
    return apply_result(instance, result, actor=actor, client=client, completed_guid=task.task_guid)

