"""Sales services: lead capture (with duplicate detection) and CSV import, the
steps ``workflows/lead_to_contract.bpmn`` and ``discount_approval.bpmn`` call,
quotes, approvals from a phone, role scoping and the funnel report.

Role scoping: a rep sees their own records, a sales manager those of their
team(s), director / finance / admin everything."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select

from ..aftersales.models import Account
from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..processes import services as processes
from ..processes.models import HumanTask
from .models import (
    STAGES,
    Contact,
    Contract,
    Lead,
    Opportunity,
    Product,
    Quote,
    QuoteLine,
    StageChange,
    Team,
    TeamMember,
)

PROCESS_KEY = "lead_to_contract"
SEE_ALL = ("director", "finance", "admin")
OPEN_LEAD = ("new", "assigned", "contacted", "pool")
# Delegation needs the same or higher authority (levels of the discount approval chain).
AUTHORITY = {"sales_manager": 1, "director": 2, "finance": 2, "admin": 3}
_LEGAL_FORMS = r"\b(co|corp|corporation|company|inc|incorporated|ltd|limited|llc|gmbh|plc|sa|ag|group)\b"


# -- normalisation and duplicates ------------------------------------------------------------
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


# -- capture ----------------------------------------------------------------------------------
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
    view = processes.start_instance(PROCESS_KEY, {
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


# -- scoping ------------------------------------------------------------------------------
def team_ids_managed_by(user: User) -> list[int]:
    """Teams whose manager is the user."""
    return list(db.session.scalars(select(Team.id).where(Team.manager_id == user.id)))


def _member_ids(team_ids: list[int]) -> list[int]:
    return list(db.session.scalars(select(TeamMember.user_id).where(TeamMember.team_id.in_(team_ids))))


def visible_owner_ids(user: User) -> list[int] | None:
    """Owners whose records the user may see (None: everyone's)."""
    if user.has_role(*SEE_ALL):
        return None
    owners = {user.id}
    if user.has_role("sales_manager"):
        owners.update(_member_ids(team_ids_managed_by(user)))
    return sorted(owners)


def scoped(stmt, owner_column, user: User):
    """``stmt`` limited to rows whose owner the user may see."""
    owners = visible_owner_ids(user)
    return stmt if owners is None else stmt.where(owner_column.in_(owners))


def _check_visible(owner_id: int | None, user: User, what: str) -> None:
    owners = visible_owner_ids(user)
    if owners is not None and owner_id not in owners:
        raise NotFound(f"{what} does not exist")  # not 403: no hint that it exists


def get_lead(lead_id: int, user: User) -> Lead:
    """A lead the user may see."""
    lead = db.session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} does not exist")
    _check_visible(lead.owner_id, user, f"lead {lead_id}")
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


def get_opportunity(opportunity_id: int, user: User) -> Opportunity:
    """An opportunity the user may see."""
    opp = db.session.get(Opportunity, opportunity_id)
    if opp is None:
        raise NotFound(f"opportunity {opportunity_id} does not exist")
    _check_visible(opp.owner_id, user, f"opportunity {opportunity_id}")
    return opp


def list_opportunities(user: User, *, stage: str | None = None, limit: int = 100,
                       after_id: int | None = None) -> list[Opportunity]:
    """Opportunities the user may see."""
    stmt = scoped(select(Opportunity).order_by(Opportunity.id).limit(limit), Opportunity.owner_id, user)
    if stage:
        stmt = stmt.where(Opportunity.stage == stage)
    if after_id:
        stmt = stmt.where(Opportunity.id > after_id)
    return db.session.scalars(stmt).all()


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


def list_contracts(user: User, *, limit: int = 200) -> list[Contract]:
    """Contracts of the deals the user may see."""
    stmt = select(Contract).join(Opportunity, Opportunity.id == Contract.opportunity_id).order_by(
        Contract.id.desc()).limit(limit)
    return db.session.scalars(scoped(stmt, Opportunity.owner_id, user)).all()


def stage_history(opportunity_id: int) -> list[dict]:
    """The stages an opportunity went through, with days spent in each."""
    now = utcnow()
    rows = db.session.scalars(select(StageChange).where(StageChange.opportunity_id == opportunity_id)
                              .order_by(StageChange.id)).all()
    return [{"stage": r.stage, "entered_at": r.entered_at.isoformat(),
             "left_at": r.left_at.isoformat() if r.left_at else None,
             "days": round(((r.left_at or now) - r.entered_at).total_seconds() / 86400, 2)} for r in rows]


# -- steps called by the BPMN ---------------------------------------------------------------
def _lead(lead_id: int) -> Lead:
    lead = db.session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} does not exist")
    return lead


@register_service("record_lead_score")
def record_lead_score(lead_id: int, score: int, grade: str) -> bool:
    """Store the DMN's score and grade on the lead."""
    lead = _lead(lead_id)
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
    lead = _lead(lead_id)
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
    processes.record_audit("lead_assigned", data={"lead_id": lead.id, "team": team.name, "owner_id": chosen.user_id})
    return chosen.user_id


@register_service("remind_lead_owner")
def remind_lead_owner(lead_id: int) -> bool:
    """The owner has not contacted the lead yet: note a reminder (shown in their lead list)."""
    lead = _lead(lead_id)
    lead.notes = "\n".join(filter(None, [lead.notes, f"Reminder {utcnow():%Y-%m-%d}: not contacted yet."]))
    processes.record_audit("lead_reminder", data={"lead_id": lead.id, "owner_id": lead.owner_id})
    return True


@register_service("return_lead_to_pool")
def return_lead_to_pool(lead_id: int) -> bool:
    """Take the lead back from an owner who did not contact it."""
    lead = _lead(lead_id)
    lead.previous_owner_ids = [*(lead.previous_owner_ids or []), lead.owner_id]
    processes.record_audit("lead_returned_to_pool", data={"lead_id": lead.id, "owner_id": lead.owner_id})
    lead.status, lead.owner_id = "pool", None
    return True


@register_service("disqualify_lead")
def disqualify_lead(lead_id: int, reason: str) -> bool:
    """Close a lead as not qualified, with the reason."""
    lead = _lead(lead_id)
    lead.status, lead.disqualify_reason = "disqualified", reason
    return True


def _enter(opp: Opportunity, stage: str, actor_id: int | None = None) -> None:
    now = utcnow()
    current = db.session.scalar(select(StageChange).where(StageChange.opportunity_id == opp.id,
                                                          StageChange.left_at.is_(None)))
    if current is not None:
        current.left_at = now
    db.session.add(StageChange(opportunity_id=opp.id, stage=stage, entered_at=now, actor_id=actor_id))
    opp.stage, opp.stage_entered_at = stage, now
    if stage in ("won", "lost"):
        opp.closed_at = now
        db.session.flush()
        last = db.session.scalar(select(StageChange).where(StageChange.opportunity_id == opp.id,
                                                           StageChange.left_at.is_(None)))
        last.left_at = now


def open_opportunity_for(account_id: int, product_line: str | None) -> Opportunity | None:
    """An open opportunity on the same account and product line (one deal, one rep)."""
    return db.session.scalar(select(Opportunity).where(
        Opportunity.account_id == account_id, Opportunity.product_line == product_line,
        Opportunity.stage.notin_(("won", "lost"))).limit(1))


@register_service("convert_lead")
def convert_lead(lead_id: int, estimated_value: float = 0) -> int:
    """Qualified: the lead becomes an account (found by company name or new), a contact and an opportunity.
    A second open deal for the same account and product line is flagged against the first."""
    lead = _lead(lead_id)
    account = db.session.scalar(select(Account).where(func.lower(Account.name) == lead.company.lower()))
    if account is None:
        account = Account(name=lead.company, tier="normal", phone=lead.phone, email=lead.email, created_at=utcnow())
        db.session.add(account)
        db.session.flush()
    contact = Contact(account_id=account.id, name=lead.contact_name, email=lead.email, phone=lead.phone)
    db.session.add(contact)
    if account.tier in ("key", "vip"):
        watch_key_account(account)
    rival = open_opportunity_for(account.id, lead.product_line)
    opp = Opportunity(name=f"{lead.company} — {lead.product_line or 'deal'}", account_id=account.id,
                      contact_id=None, owner_id=lead.owner_id, team_id=lead.team_id, product_line=lead.product_line,
                      amount=Decimal(str(estimated_value or 0)), stage="initial_contact",
                      flagged_duplicate_of_id=rival.id if rival else None, instance_id=lead.instance_id,
                      created_at=utcnow(), stage_entered_at=utcnow())
    db.session.add(opp)
    db.session.flush()
    opp.contact_id = contact.id
    _enter(opp, "initial_contact", lead.owner_id)
    lead.status, lead.opportunity_id = "qualified", opp.id
    return opp.id


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
    processes.record_audit("key_account_reminder", data={"account_id": account_id, "owners": owners,
                                                          "last_activity": last.isoformat() if last else None})
    return True


def watch_key_account(account: Account) -> None:
    """Start the key-account watch for a key or VIP account, once."""
    from ..processes.models import ProcessInstance

    key = f"ACCOUNT-{account.id}"
    running = db.session.scalar(select(ProcessInstance.id).where(ProcessInstance.business_key == key,
                                                                 ProcessInstance.status == "running"))
    if account.tier in ("key", "vip") and running is None:
        processes.start_instance("key_account_watch", {"account_id": account.id}, business_key=key)


@register_service("enter_stage")
def enter_stage(opportunity_id: int, stage: str, detail: str = "") -> bool:
    """Move an opportunity to the next stage (the task form before it checked what the stage needs)."""
    opp = db.session.get(Opportunity, opportunity_id)
    if stage not in STAGES:
        raise ValidationFailed(f"unknown stage '{stage}'")
    if stage == "needs_confirmed" and detail:
        opp.needs = detail
    _enter(opp, stage, opp.owner_id)
    return True


def quote_totals(quote: Quote) -> dict:
    """List value, discounted value and margin of a quote."""
    list_value = sum((line.unit_price * line.quantity for line in quote.lines), Decimal("0"))
    cost = sum((line.unit_cost * line.quantity for line in quote.lines), Decimal("0"))
    value = (list_value * (100 - quote.discount_percent) / 100).quantize(Decimal("0.01"))
    margin = value - cost
    return {"list_value": float(list_value), "value": float(value), "cost": float(cost), "margin": float(margin),
            "margin_percent": round(float(margin / value * 100), 1) if value else None}


@register_service("quote_terms")
def quote_terms(quote_id: int) -> dict:
    """What the approval rules look at: the discount, the deal value, the rep's team manager."""
    quote = db.session.get(Quote, quote_id)
    if quote is None:
        raise NotFound(f"quote {quote_id} does not exist")
    team = db.session.get(Team, quote.opportunity.team_id) if quote.opportunity.team_id else None
    return {"discount_percent": float(quote.discount_percent), "value": quote_totals(quote)["value"],
            "team_manager_id": team.manager_id if team else None}


@register_service("request_quote_approval")
def request_quote_approval(quote_id: int, approval_chain: list) -> bool:
    """Within the rep's authority the quote is approved at once; else it waits for the chain."""
    quote = db.session.get(Quote, quote_id)
    quote.approval_chain = list(approval_chain)
    quote.status = "pending" if approval_chain else "approved"
    return not approval_chain


@register_service("record_approval_step")
def record_approval_step(quote_id: int, level: str, role: str) -> bool:
    """Note which level the approval has reached."""
    quote = db.session.get(Quote, quote_id)
    quote.decisions = [*(quote.decisions or []), {"event": "routed", "level": level, "role": role,
                                                   "at": utcnow().isoformat()}]
    return True


@register_service("record_approval_reminder")
def record_approval_reminder(quote_id: int, level: str) -> bool:
    """The approver sat on it for the first interval."""
    quote = db.session.get(Quote, quote_id)
    quote.decisions = [*(quote.decisions or []), {"event": "reminded", "level": level, "at": utcnow().isoformat()}]
    processes.record_audit("approval_reminder", data={"quote_id": quote_id, "level": level})
    return True


@register_service("record_approval_escalation")
def record_approval_escalation(quote_id: int, from_level: str, to_level: str) -> bool:
    """The approver sat on it for the second interval: the step moves up a level."""
    quote = db.session.get(Quote, quote_id)
    quote.decisions = [*(quote.decisions or []), {"event": "escalated", "from": from_level, "to": to_level,
                                                   "at": utcnow().isoformat()}]
    processes.record_audit("approval_escalated", data={"quote_id": quote_id, "from": from_level, "to": to_level})
    return True


@register_service("finish_quote_approval")
def finish_quote_approval(quote_id: int, approved: bool, reason: str = "") -> bool:
    """The chain approved (the quote may be sent) or someone rejected (the rep revises)."""
    quote = db.session.get(Quote, quote_id)
    quote.status = "approved" if approved else "rejected"
    quote.decisions = [*(quote.decisions or []), {"event": "approved" if approved else "rejected",
                                                   "reason": reason, "at": utcnow().isoformat()}]
    return bool(approved)


@register_service("create_contract")
def create_contract(quote_id: int) -> int:
    """The accepted quote becomes a draft contract."""
    quote = db.session.get(Quote, quote_id)
    if quote.status not in ("approved", "sent"):
        raise Conflict(f"quote {quote_id} is {quote.status}: only an approved quote becomes a contract")
    contract = Contract(opportunity_id=quote.opportunity_id, quote_id=quote.id,
                        value=Decimal(str(quote_totals(quote)["value"])), status="draft")
    db.session.add(contract)
    db.session.flush()
    return contract.id


@register_service("mark_opportunity_won")
def mark_opportunity_won(opportunity_id: int, contract_id: int, signed_by: str) -> bool:
    """Contract signed: the deal is won."""
    contract = db.session.get(Contract, contract_id)
    contract.status, contract.signed_at, contract.signed_by = "signed", utcnow(), signed_by
    opp = db.session.get(Opportunity, opportunity_id)
    opp.amount = contract.value
    _enter(opp, "won", opp.owner_id)
    return True


@register_service("mark_opportunity_lost")
def mark_opportunity_lost(opportunity_id: int, reason: str) -> bool:
    """The deal is lost, with the reason."""
    opp = db.session.get(Opportunity, opportunity_id)
    opp.lost_reason = reason
    _enter(opp, "lost", opp.owner_id)
    return True


# -- quotes -----------------------------------------------------------------------------------
def create_quote(opportunity_id: int, lines: list[dict], discount_percent, user: User) -> Quote:
    """A quote on an opportunity from price-list products (prices and costs copied at quoting time)."""
    opp = get_opportunity(opportunity_id, user)
    if opp.stage != "quote_negotiation":
        raise Conflict(f"opportunity {opp.id} is at '{opp.stage}': quotes come at 'quote_negotiation'")
    discount = Decimal(str(discount_percent))
    if not Decimal("0") <= discount <= Decimal("100"):
        raise ValidationFailed("discount out of range", errors=[{"field": "discount_percent", "message": "0–100"}])
    quote = Quote(opportunity_id=opp.id, status="draft", discount_percent=discount, approval_chain=[],
                  decisions=[], created_at=utcnow())
    db.session.add(quote)
    db.session.flush()
    for n, line in enumerate(lines):
        product = db.session.get(Product, line.get("product_id"))
        if product is None:
            raise ValidationFailed("unknown product", errors=[{"field": f"lines[{n}].product_id",
                                                               "message": "does not exist"}])
        db.session.add(QuoteLine(quote_id=quote.id, product_id=product.id, quantity=int(line.get("quantity", 1)),
                                 unit_price=product.list_price, unit_cost=product.unit_cost))
    db.session.flush()
    db.session.refresh(quote)
    return quote


def send_quote(quote_id: int, user: User) -> Quote:
    """Mark a quote as sent to the customer — only once its discount is approved."""
    quote = db.session.get(Quote, quote_id)
    if quote is None:
        raise NotFound(f"quote {quote_id} does not exist")
    get_opportunity(quote.opportunity_id, user)
    if quote.status != "approved":
        raise Conflict(f"quote {quote.id} is {quote.status}: it can be sent once approved")
    quote.status, quote.sent_at = "sent", utcnow()
    return quote


def open_task_of(opportunity_or_lead_instance: int, element_id: str) -> HumanTask | None:
    """The open human task of an instance at an element (e.g. the rep's current step)."""
    return db.session.scalar(select(HumanTask).where(HumanTask.instance_id == opportunity_or_lead_instance,
                                                     HumanTask.element_id == element_id,
                                                     HumanTask.status == "open"))


STEP_ELEMENTS = ("contact_lead", "qualify_lead", "confirm_needs", "present_solution", "prepare_quote", "negotiate",
                 "sign_contract")


def next_step(instance_id: int | None) -> HumanTask | None:
    """The rep's open step (a lead's or opportunity's human task) in its lead-to-contract instance."""
    if instance_id is None:
        return None
    return db.session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                     HumanTask.element_id.in_(STEP_ELEMENTS),
                                                     HumanTask.status == "open").order_by(HumanTask.id))


def quotes_of(opportunity_id: int) -> list[Quote]:
    """An opportunity's quotes, newest first."""
    return db.session.scalars(select(Quote).where(Quote.opportunity_id == opportunity_id)
                              .order_by(Quote.id.desc())).all()


# -- approvals (mobile) --------------------------------------------------------------------
def _approval_tasks_query():
    return select(HumanTask).where(HumanTask.element_id == "approve_discount", HumanTask.status == "open")


def pending_approvals(user: User) -> list[HumanTask]:
    """Open discount approvals the user may decide (assigned to them, or for one of their roles)."""
    tasks = db.session.scalars(_approval_tasks_query().order_by(HumanTask.id)).all()
    return [t for t in tasks if processes.can_act_on(t, user)]


def approval_task(task_id: int, user: User) -> HumanTask:
    """An approval task the user may act on (others are not found)."""
    task = db.session.get(HumanTask, task_id)
    if task is None or task.element_id != "approve_discount" or not processes.can_act_on(task, user):
        raise NotFound(f"approval {task_id} does not exist")
    return task


def approval_context(task: HumanTask) -> dict:
    """The deal behind an approval: account, opportunity, lines, margin, the approval history."""
    from ..processes.models import ProcessInstance

    data = db.session.get(ProcessInstance, task.instance_id).data or {}
    quote = db.session.get(Quote, data.get("quote_id"))
    if quote is None:
        raise NotFound("the quote of this approval does not exist")
    opp = quote.opportunity
    account = db.session.get(Account, opp.account_id)
    owner = db.session.get(User, opp.owner_id)
    routed = [d for d in quote.decisions or [] if d.get("event") == "routed"]
    return {
        "task_id": task.id, "status": task.status, "level": routed[-1]["level"] if routed else None,
        "quote": {"id": quote.id, "status": quote.status, "discount_percent": float(quote.discount_percent),
                  **quote_totals(quote)},
        "opportunity": {"id": opp.id, "name": opp.name, "stage": opp.stage, "owner": owner.full_name or owner.username},
        "account": {"id": account.id, "name": account.name, "tier": account.tier},
        "lines": [{"sku": line.product.sku, "name": line.product.name, "quantity": line.quantity,
                   "unit_price": float(line.unit_price)} for line in quote.lines],
        "history": quote.decisions or [],
    }


def decide_approval(task_id: int, user: User, decision: str, reason: str | None, *, client: str | None) -> dict:
    """Approve or reject (a reason is required, the form says so) through the process."""
    task = approval_task(task_id, user)
    data = {"decision": decision}
    if reason:
        data["reason"] = reason
    context = approval_context(task)
    processes.complete_task(task.id, data, user, client=client)
    quote = db.session.get(Quote, context["quote"]["id"])
    quote.decisions = [*(quote.decisions or []), {"event": decision, "by": user.username, "reason": reason or "",
                                                   "at": utcnow().isoformat(), "client": client}]
    return context


def delegate_approval(task_id: int, user: User, delegate_id: int, *, client: str | None) -> HumanTask:
    """Hand an approval to a named colleague with the same or higher authority."""
    task = approval_task(task_id, user)
    delegate = db.session.get(User, delegate_id)
    needed = AUTHORITY.get(task.candidate_role or "", 1)
    best = max((AUTHORITY.get(role, 0) for role in (delegate.roles if delegate else [])), default=0)
    if delegate is None or not delegate.active or best < needed or delegate.id == user.id:
        raise ValidationFailed("delegate to a colleague with the same or higher approval authority",
                               errors=[{"field": "delegate_id", "message": "not allowed to approve this level"}])
    role = max((r for r in delegate.roles if r in AUTHORITY), key=lambda r: AUTHORITY[r])
    task.assignee_id, task.candidate_role = delegate.id, role
    processes.record_audit("approval_delegated", task.instance_id and _instance_ref(task.instance_id),
                           actor=user, client=client, element_id=task.element_id,
                           data={"task_id": task.id, "to": delegate.id})
    return task


def possible_delegates(user: User) -> list[User]:
    """Colleagues who hold some approval authority (the delegate list of the approval page)."""
    users = db.session.scalars(select(User).where(User.active.is_(True), User.id != user.id)
                               .order_by(User.full_name, User.username)).all()
    return [u for u in users if any(role in AUTHORITY for role in u.roles)]


def decisions_by(user: User, *, limit: int = 100) -> list[dict]:
    """The approval decisions and delegations ``user`` took, newest first, with the deal they were about."""
    from ..processes.models import AuditEvent, ProcessInstance

    rows = db.session.execute(
        select(AuditEvent, ProcessInstance.data).join(ProcessInstance, ProcessInstance.id == AuditEvent.instance_id)
        .where(AuditEvent.actor_id == user.id, AuditEvent.element_id == "approve_discount",
               AuditEvent.event.in_(("task_completed", "approval_delegated")))
        .order_by(AuditEvent.id.desc()).limit(limit)).all()
    quotes = {q.id: q for q in db.session.scalars(select(Quote).where(
        Quote.id.in_({(data or {}).get("quote_id") for _, data in rows})))}
    out = []
    for event, data in rows:
        quote = quotes.get((data or {}).get("quote_id"))
        details = (event.data or {}).get("data") or {}
        out.append({"at": event.created_at, "decision": details.get("decision") or "delegate",
                    "reason": details.get("reason"), "quote": quote,
                    "deal": quote.opportunity.name if quote else None})
    return out


def _instance_ref(instance_id: int):
    from types import SimpleNamespace

    return SimpleNamespace(id=instance_id)


# -- funnel ----------------------------------------------------------------------------------
STAGE_PROBABILITY = {"initial_contact": 0.1, "needs_confirmed": 0.25, "solution_demo": 0.5,
                     "quote_negotiation": 0.75, "won": 1.0, "lost": 0.0}


def funnel(user: User, *, team_id: int | None = None, owner_id: int | None = None,
           since: datetime | None = None, until: datetime | None = None) -> dict:
    """Per stage: count and value, conversion to the next stage, average days in stage; lost reasons;
    forecast = Σ value × stage probability over open deals. Scoped to what the user may see."""
    stmt = scoped(select(Opportunity), Opportunity.owner_id, user)
    if team_id:
        stmt = stmt.where(Opportunity.team_id == team_id)
    if owner_id:
        stmt = stmt.where(Opportunity.owner_id == owner_id)
    if since:
        stmt = stmt.where(Opportunity.created_at >= since)
    if until:
        stmt = stmt.where(Opportunity.created_at < until)
    opps = db.session.scalars(stmt).all()
    ids = [o.id for o in opps]
    reached: dict[str, set[int]] = {s: set() for s in STAGES}
    days: dict[str, list[float]] = {s: [] for s in STAGES}
    now = utcnow()
    for change in db.session.scalars(select(StageChange).where(StageChange.opportunity_id.in_(ids))):
        reached[change.stage].add(change.opportunity_id)
        if change.stage not in ("won", "lost"):
            days[change.stage].append(((change.left_at or now) - change.entered_at).total_seconds() / 86400)
    stages = []
    path = ["initial_contact", "needs_confirmed", "solution_demo", "quote_negotiation", "won"]
    for stage in STAGES:
        current = [o for o in opps if o.stage == stage]
        row = {"stage": stage, "count": len(current), "value": float(sum((o.amount for o in current), Decimal(0))),
               "reached": len(reached[stage]), "probability": STAGE_PROBABILITY[stage],
               "average_days": round(sum(days[stage]) / len(days[stage]), 2) if days[stage] else None}
        if stage in path[:-1]:
            following = path[path.index(stage) + 1]
            row["conversion_to_next"] = round(len(reached[following]) / len(reached[stage]) * 100, 1) \
                if reached[stage] else None
        stages.append(row)
    lost: dict[str, int] = {}
    for o in opps:
        if o.stage == "lost":
            lost[o.lost_reason or "unspecified"] = lost.get(o.lost_reason or "unspecified", 0) + 1
    forecast = sum(float(o.amount) * STAGE_PROBABILITY[o.stage] for o in opps if o.stage not in ("won", "lost"))
    return {"stages": stages, "lost_reasons": [{"reason": r, "count": n} for r, n in sorted(lost.items())],
            "weighted_forecast": round(forecast, 2), "opportunities": len(opps)}
