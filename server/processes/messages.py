"""Delivering messages: correlate a message (name + key) to the instances waiting for it."""

from __future__ import annotations

from sqlalchemy import select

from ..auth.models import User
from ..engine import NoMessageWaiting
from ..errors import Conflict, NotFound
from ..extensions import db
from .audit import record_audit
from .models import MessageSubscription
from .runs import apply_result, get_engine, instance_ref, load_instance


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
        instance = load_instance(instance_id, lock=True)
        if instance.status != "running":
            continue
        try:
            result = get_engine().deliver_message(instance_ref(instance), instance.state, name, payload or {})
        except NoMessageWaiting:
            continue
        record_audit("message_received", instance, actor=actor, client=client,
                     data={"name": name, "correlation_key": correlation_key, "payload": payload or {}})
        apply_result(instance, result, actor=actor, client=client)
        delivered.append(instance_id)
    if not delivered:
        raise Conflict(f"the instances waiting for '{name}' cannot take it now (suspended or in error)")
    return delivered

