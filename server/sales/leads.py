"""Leads: capture (with duplicate detection and merging) and CSV import, which start the
lead-to-contract process, and the lead steps that process calls (score, assign, remind, back to
the pool, disqualify)."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime

from sqlalchemy import func, or_, select

from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..processes.audit import record_audit
from ..processes.instances import start_instance
from .models import Lead, Opportunity, Team, TeamMember
from .scoping import check_visible, scoped

PROCESS_KEY = "lead_to_contract"


OPEN_LEAD = ("new", "assigned", "contacted", "pool")


_LEGAL_FORMS = r"\b(co|corp|corporation|company|inc|incorporated|ltd|limited|llc|gmbh|plc|sa|ag|group)\b"


def phone_key(phone: str | None) -> str | None:
    """Digits only, international prefix dropped, last 10 digits: '+86 138-0013-8000' = '(0086)13800138000'."""
    digits = re.sub(r"\D", "", phone or "")
    if digits.startswith("00"):
        digits = digits[2:]
    return digits[-10:] if len(digits) >= 7 else None


def email_key(email: str | None) -> str | None:
    """Lower case, trimmed, '+tag' removed from the local part."""
    email = (email or "").strip().lower()
    if "@" not in email:
        return None
    local, _, domain = email.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def company_key(name: str) -> str:
    """Lower case, punctuation and legal forms removed: 'ACME Co., Ltd.' = 'Acme'."""
    text = re.sub(r"[^\w\s]", " ", (name or "").lower())
    return " ".join(re.sub(_LEGAL_FORMS, " ", text).split())


def find_duplicate(email: str | None, phone: str | None) -> Lead | None:
    """An existing lead with the same normalised e-mail or phone."""
    keys = [(Lead.email_key, email_key(email)), (Lead.phone_key, phone_key(phone))]
    conditions = [column == value for column, value in keys if value]
    if not conditions:
        return None
    return db.session.scalar(select(Lead).where(or_(*conditions)).order_by(Lead.id).limit(1))


LEAD_FIELDS = ("company", "contact_name", "email", "phone", "industry", "region", "product_line", "company_size",
               "engagement", "notes")


def _check_lead(data: dict) -> list[dict]:
    errors = [{"field": f, "message": "required"} for f in ("company", "contact_name") if not str(
        data.get(f) or "").strip()]
    if not (data.get("email") or data.get("phone")):
        errors.append({"field": "email", "message": "an e-mail or a phone is required"})
    if data.get("email") and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(data["email"]).strip()):
        errors.append({"field": "email", "message": "not an e-mail address"})
    if data.get("phone") and phone_key(str(data["phone"])) is None:
        errors.append({"field": "phone", "message": "not a phone number"})
    for field in ("company_size", "engagement"):
        value = data.get(field)
        if value not in (None, "") and not str(value).strip().isdigit():
            errors.append({"field": field, "message": "a whole number"})
    return errors


def capture_lead(data: dict, *, source: str, actor: User | None = None, client: str | None = None
                 ) -> tuple[Lead, str]:
    """Create a lead and start its process — or merge it into the lead with the same e-mail/phone, or
    flag it when only the company matches. Returns (lead, 'created' | 'merged' | 'flagged')."""
    errors = _check_lead(data)
    if errors:
        raise ValidationFailed("the lead is not valid", errors=errors)
    values = {f: (str(data[f]).strip() if isinstance(data.get(f), str) else data.get(f)) or None for f in LEAD_FIELDS}
    for field in ("company_size", "engagement"):
        values[field] = int(values[field]) if values[field] not in (None, "") else None
    existing = find_duplicate(values["email"], values["phone"])
    if existing is not None:
        for field, value in values.items():  # fill what the first capture did not know
            if value and not getattr(existing, field):
                setattr(existing, field, value)
        existing.engagement = (existing.engagement or 0) + 1
        existing.notes = "\n".join(filter(None, [existing.notes, f"Merged a duplicate from {source}."]))
        return existing, "merged"
    lead = Lead(**{**values, "engagement": values["engagement"] or 0}, source=source,
                email_key=email_key(values["email"]), phone_key=phone_key(values["phone"]),
                company_key=company_key(values["company"]), status="new", created_at=utcnow())
    same_company = db.session.scalar(select(Lead.id).where(Lead.company_key == lead.company_key).limit(1))
    lead.duplicate_of_id = same_company
    db.session.add(lead)
    db.session.flush()
    view = start_instance(PROCESS_KEY, {
        "lead_id": lead.id, "source": source, "industry": lead.industry or "", "company_size": lead.company_size or 0,
        "engagement": lead.engagement, "region": lead.region or "", "product_line": lead.product_line or ""},
        business_key=f"LEAD-{lead.id}", actor=actor, client=client)
    lead.instance_id = view["instance"].id
    return lead, "flagged" if same_company else "created"


def import_leads_csv(text: str, *, actor: User, client: str | None = None) -> dict:
    """Import leads from CSV (header row with the lead fields): every row accepted, merged, flagged or
    rejected with its reason; valid rows are imported even when others are not."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"company", "contact_name"} <= {f.strip() for f in reader.fieldnames}:
        raise ValidationFailed("the CSV needs a header row with at least company and contact_name",
                               errors=[{"field": "file", "message": "missing header company, contact_name"}])
    report = {"created": 0, "merged": 0, "flagged": 0, "rejected": []}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        errors = _check_lead(row)
        if errors:
            report["rejected"].append({"line": line, "reason": "; ".join(f"{e['field']}: {e['message']}"
                                                                         for e in errors)})
            continue
        _, outcome = capture_lead(row, source=row.get("source") or "import", actor=actor, client=client)
        report[outcome] += 1
    report["accepted"] = report["created"] + report["merged"] + report["flagged"]
    return report


def get_lead(lead_id: int, user: User) -> Lead:
    """A lead the user may see."""
    lead = db.session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} does not exist")
    check_visible(lead.owner_id, user, f"lead {lead_id}")
    return lead


def list_leads(user: User, *, status: str | None = None, pool: bool = False, limit: int = 100,
               after_id: int | None = None) -> list[Lead]:
    """Leads the user may see (``pool``: unowned leads waiting for a rep)."""
    stmt = select(Lead).order_by(Lead.id).limit(limit)
    stmt = stmt.where(Lead.status == "pool") if pool else scoped(stmt, Lead.owner_id, user)
    if status:
        stmt = stmt.where(Lead.status == status)
    if after_id:
        stmt = stmt.where(Lead.id > after_id)
    return db.session.scalars(stmt).all()


def lead_by_id(lead_id: int) -> Lead:
    """A lead by id, unscoped (for the steps the process calls), or NotFound."""
    lead = db.session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} does not exist")
    return lead


@register_service("record_lead_score")
def record_lead_score(lead_id: int, score: int, grade: str) -> bool:
    """Store the DMN's score and grade on the lead."""
    lead = lead_by_id(lead_id)
    lead.score, lead.grade = int(score), str(grade)
    return True


def _open_workload(user_id: int) -> int:
    leads = db.session.scalar(select(func.count(Lead.id)).where(Lead.owner_id == user_id,
                                                                Lead.status.in_(("assigned", "contacted"))))
    opps = db.session.scalar(select(func.count(Opportunity.id)).where(
        Opportunity.owner_id == user_id, Opportunity.stage.notin_(("won", "lost"))))
    return leads + opps


@register_service("assign_lead")
def assign_lead(lead_id: int, team_name: str) -> int | None:
    """Give the lead to the team's rep with the least open work (ties: longest since the last lead),
    never back to a rep it was taken from. Returns the owner's user id."""
    lead = lead_by_id(lead_id)
    team = db.session.scalar(select(Team).where(Team.name == team_name))
    if team is None:
        raise ValidationFailed(f"the routing table named team '{team_name}', which does not exist")
    taken_from = set(lead.previous_owner_ids or [])
    members = db.session.scalars(select(TeamMember).where(TeamMember.team_id == team.id)).all()
    reps = [m for m in members if m.user_id != team.manager_id and m.user_id not in taken_from] or \
        [m for m in members if m.user_id != team.manager_id]
    if not reps:
        raise ValidationFailed(f"team '{team_name}' has no reps")
    never = datetime.min.replace(tzinfo=utcnow().tzinfo)
    chosen = min(reps, key=lambda m: (_open_workload(m.user_id), m.last_assigned_at or never, m.user_id))
    chosen.last_assigned_at = utcnow()
    lead.team_id, lead.owner_id, lead.status = team.id, chosen.user_id, "assigned"
    record_audit("lead_assigned", data={"lead_id": lead.id, "team": team.name, "owner_id": chosen.user_id})
    return chosen.user_id


@register_service("remind_lead_owner")
def remind_lead_owner(lead_id: int) -> bool:
    """The owner has not contacted the lead yet: note a reminder (shown in their lead list)."""
    lead = lead_by_id(lead_id)
    lead.notes = "\n".join(filter(None, [lead.notes, f"Reminder {utcnow():%Y-%m-%d}: not contacted yet."]))
    record_audit("lead_reminder", data={"lead_id": lead.id, "owner_id": lead.owner_id})
    return True


@register_service("return_lead_to_pool")
def return_lead_to_pool(lead_id: int) -> bool:
    """Take the lead back from an owner who did not contact it."""
    lead = lead_by_id(lead_id)
    lead.previous_owner_ids = [*(lead.previous_owner_ids or []), lead.owner_id]
    record_audit("lead_returned_to_pool", data={"lead_id": lead.id, "owner_id": lead.owner_id})
    lead.status, lead.owner_id = "pool", None
    return True


@register_service("disqualify_lead")
def disqualify_lead(lead_id: int, reason: str) -> bool:
    """Close a lead as not qualified, with the reason."""
    lead = lead_by_id(lead_id)
    lead.status, lead.disqualify_reason = "disqualified", reason
    return True

