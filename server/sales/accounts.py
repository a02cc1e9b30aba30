"""Customer accounts as sales sees them, their last activity and the key-account watch."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from ..aftersales.models import Account
from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..extensions import db
from ..processes.audit import record_audit
from ..processes.instances import start_instance
from ..processes.models import ProcessInstance
from .models import Contact, Opportunity, StageChange
from .scoping import scoped, visible_owner_ids


def list_accounts(user: User, *, limit: int = 200) -> list[dict]:
    """Accounts with their contacts and open deals; a rep sees the accounts of deals they may see."""
    stmt = select(Account).order_by(Account.name).limit(limit)
    if visible_owner_ids(user) is not None:
        stmt = stmt.where(Account.id.in_(scoped(select(Opportunity.account_id), Opportunity.owner_id, user)))
    accounts = db.session.scalars(stmt).all()
    ids = [a.id for a in accounts]
    contacts: dict[int, list] = {}
    for c in db.session.scalars(select(Contact).where(Contact.account_id.in_(ids))):
        contacts.setdefault(c.account_id, []).append({"id": c.id, "name": c.name, "email": c.email, "phone": c.phone})
    return [{"id": a.id, "name": a.name, "tier": a.tier, "contacts": contacts.get(a.id, []),
             "last_activity": (last_activity(a.id) or a.created_at).isoformat()} for a in accounts]


def last_activity(account_id: int) -> datetime | None:
    """The latest thing that happened on an account: a deal created or moved to a stage."""
    moved = db.session.scalar(select(func.max(StageChange.entered_at)).join(
        Opportunity, Opportunity.id == StageChange.opportunity_id).where(Opportunity.account_id == account_id))
    created = db.session.scalar(select(func.max(Opportunity.created_at)).where(Opportunity.account_id == account_id))
    return max((t for t in (moved, created) if t is not None), default=None)


@register_service("remind_inactive_key_account")
def remind_inactive_key_account(account_id: int, days: int) -> bool:
    """Remind the reps of a key account's open deals when nothing happened on it for ``days`` days."""
    last = last_activity(account_id)
    if last is not None and utcnow() - last < timedelta(days=days):
        return False
    owners = sorted(set(db.session.scalars(select(Opportunity.owner_id).where(
        Opportunity.account_id == account_id, Opportunity.stage.notin_(("won", "lost"))))))
    record_audit("key_account_reminder", data={"account_id": account_id, "owners": owners,
                                               "last_activity": last.isoformat() if last else None})
    return True


def watch_key_account(account: Account) -> None:
    """Start the key-account watch for a key or VIP account, once."""
    key = f"ACCOUNT-{account.id}"
    running = db.session.scalar(select(ProcessInstance.id).where(ProcessInstance.business_key == key,
                                                                 ProcessInstance.status == "running"))
    if account.tier in ("key", "vip") and running is None:
        start_instance("key_account_watch", {"account_id": account.id}, business_key=key)

