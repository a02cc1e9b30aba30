"""The audit trail: append-only events of instances and domain actions."""

from __future__ import annotations

from ..auth.models import User
from ..db import queue_insert, utcnow
from .models import AuditEvent


def record_audit(event: str, instance=None, *, actor: User | None = None, client: str | None = None,
                 element_id: str | None = None, data: dict | None = None) -> None:
    """Append one audit event (never updated or deleted); written in one batched INSERT."""
    queue_insert(AuditEvent, {
        "instance_id": instance,  # resolved to its id when the batch is written (it may not have one yet)
        "event": event, "element_id": element_id, "actor_id": actor.id if actor is not None else None,
        "client": (client or "")[:300] or None, "data": data, "created_at": utcnow(),
    })
