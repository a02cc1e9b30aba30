"""Demo sales organisation from seeds/sales.json: teams, price list, accounts
with opportunities spread over the stages (with their stage history, so the
funnel has figures), and a few fresh leads that run through the process.
Deterministic (fixed random seed) and loaded once."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from ..aftersales.models import Account
from ..auth.models import User
from ..db import utcnow
from ..extensions import db
from . import leads
from .accounts import watch_key_account
from .models import STAGES, Opportunity, Product, StageChange, Team, TeamMember

PATH = ["initial_contact", "needs_confirmed", "solution_demo", "quote_negotiation"]


def load_sales_seeds(spec: dict) -> dict:
    """Create the demo sales data unless teams exist already; returns counts."""
    if not spec or db.session.scalar(select(Team.id).limit(1)) is not None:
        return {}
    users = {u.username: u for u in db.session.scalars(select(User))}
    rng = random.Random(spec["random_seed"])
    teams = []
    for t in spec["teams"]:
        team = Team(name=t["name"], manager_id=users[t["manager"]].id)
        db.session.add(team)
        db.session.flush()
        for member in [t["manager"], *t["members"]]:
            db.session.add(TeamMember(team_id=team.id, user_id=users[member].id))
        teams.append((team, [users[m].id for m in t["members"]]))
    for p in spec["products"]:
        db.session.add(Product(sku=p["sku"], name=p["name"], product_line=p["product_line"],
                               list_price=Decimal(str(p["list_price"])), unit_cost=Decimal(str(p["unit_cost"]))))
    accounts = []
    for name in spec["companies"]:
        account = Account(name=name, tier=rng.choice(["normal", "normal", "key", "vip"]), created_at=utcnow())
        db.session.add(account)
        accounts.append(account)
    db.session.flush()
    stages = [s for s in STAGES for _ in range(spec["stage_weights"][s])]
    now = utcnow()
    for n in range(spec["opportunities"]):
        team, reps = rng.choice(teams)
        stage = rng.choice(stages)
        line = rng.choice(["hvac", "elevator", "medical", "it"])
        account = accounts[n % len(accounts)]
        created = now - timedelta(days=rng.randint(20, 120))
        opp = Opportunity(name=f"{account.name} — {line} #{n + 1}", account_id=account.id, owner_id=rng.choice(reps),
                          team_id=team.id, product_line=line, stage=stage,
                          amount=Decimal(rng.randrange(8_000, 400_000, 500)), created_at=created,
                          stage_entered_at=created, lost_reason=rng.choice(spec["lost_reasons"]) if stage == "lost"
                          else None)
        db.session.add(opp)
        db.session.flush()
        # The stages it went through: along the path up to its stage (won/lost: from some point of it).
        reached = PATH[:PATH.index(stage) + 1] if stage in PATH else PATH[:rng.randint(1, 4)] + [stage]
        entered = created
        for index, step in enumerate(reached):
            left = entered + timedelta(days=rng.uniform(2, 15)) if index < len(reached) - 1 else None
            if step in ("won", "lost"):
                left = entered
                opp.closed_at = entered
            db.session.add(StageChange(opportunity_id=opp.id, stage=step, entered_at=entered, left_at=left,
                                       actor_id=opp.owner_id))
            opp.stage_entered_at = entered
            entered = left or entered
    for account in accounts:
        watch_key_account(account)
    for lead in spec["leads"]:
        leads.capture_lead(dict(lead), source=lead.get("source", "seed"))
    return {"teams": len(teams), "opportunities": spec["opportunities"], "leads": len(spec["leads"])}
