"""Opportunities: converting a qualified lead, moving through the stages, won / lost, and the rep's
next step in the lead-to-contract process."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from ..aftersales.models import Account
from ..auth.models import User
from ..db import utcnow
from ..engine import register_service
from ..errors import NotFound, ValidationFailed
from ..extensions import db
from ..processes.models import HumanTask
from .accounts import watch_key_account
from .leads import lead_by_id
from .models import STAGES, Contact, Contract, Opportunity, StageChange
from .scoping import check_visible, scoped


def get_opportunity(opportunity_id: int, user: User) -> Opportunity:
    """An opportunity the user may see."""
    opp = db.session.get(Opportunity, opportunity_id)
    if opp is None:
        raise NotFound(f"opportunity {opportunity_id} does not exist")
    check_visible(opp.owner_id, user, f"opportunity {opportunity_id}")
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


def stage_history(opportunity_id: int) -> list[dict]:
    """The stages an opportunity went through, with days spent in each."""
    now = utcnow()
    rows = db.session.scalars(select(StageChange).where(StageChange.opportunity_id == opportunity_id)
                              .order_by(StageChange.id)).all()
    return [{"stage": r.stage, "entered_at": r.entered_at.isoformat(),
             "left_at": r.left_at.isoformat() if r.left_at else None,
             "days": round(((r.left_at or now) - r.entered_at).total_seconds() / 86400, 2)} for r in rows]


def move_to_stage(opp: Opportunity, stage: str, actor_id: int | None = None) -> None:
    """Close the opportunity's current stage and enter ``stage`` (won / lost also close the deal)."""
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
    lead = lead_by_id(lead_id)
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
    move_to_stage(opp, "initial_contact", lead.owner_id)
    lead.status, lead.opportunity_id = "qualified", opp.id
    return opp.id


@register_service("enter_stage")
def enter_stage(opportunity_id: int, stage: str, detail: str = "") -> bool:
    """Move an opportunity to the next stage (the task form before it checked what the stage needs)."""
    opp = db.session.get(Opportunity, opportunity_id)
    if stage not in STAGES:
        raise ValidationFailed(f"unknown stage '{stage}'")
    if stage == "needs_confirmed" and detail:
        opp.needs = detail
    move_to_stage(opp, stage, opp.owner_id)
    return True


@register_service("mark_opportunity_won")
def mark_opportunity_won(opportunity_id: int, contract_id: int, signed_by: str) -> bool:
    """Contract signed: the deal is won."""
    contract = db.session.get(Contract, contract_id)
    contract.status, contract.signed_at, contract.signed_by = "signed", utcnow(), signed_by
    opp = db.session.get(Opportunity, opportunity_id)
    opp.amount = contract.value
    move_to_stage(opp, "won", opp.owner_id)
    return True


@register_service("mark_opportunity_lost")
def mark_opportunity_lost(opportunity_id: int, reason: str) -> bool:
    """The deal is lost, with the reason."""
    opp = db.session.get(Opportunity, opportunity_id)
    opp.lost_reason = reason
    move_to_stage(opp, "lost", opp.owner_id)
    return True


def list_contracts(user: User, *, limit: int = 200) -> list[Contract]:
    """Contracts of the deals the user may see."""
    stmt = select(Contract).join(Opportunity, Opportunity.id == Contract.opportunity_id).order_by(
        Contract.id.desc()).limit(limit)
    return db.session.scalars(scoped(stmt, Opportunity.owner_id, user)).all()


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

