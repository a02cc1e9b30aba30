"""Lead to contract and discount approval, end to end through HTTP: capture →
score → assign → contact → qualify → stages (with their required fields) →
quote with 25 % → director then finance approve on the mobile API → sent →
contract signed → won. Plus: reminders and the pool, approver idle,
duplicates and CSV import, the permission matrix, the funnel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from server.auth.models import User
from server.db import transaction
from server.extensions import db
from server.processes.models import AuditEvent, HumanTask, ProcessInstance
from server.sales.models import Contract, Lead, Opportunity, Product, Quote, Team, TeamMember

START = datetime(2026, 4, 6, 9, 0, tzinfo=UTC)
SALES_FILES = ("lead_to_contract.bpmn", "discount_approval.bpmn", "key_account_watch.bpmn", "lead_scoring.dmn",
               "lead_routing.dmn", "discount_approvers.dmn")
LEAD = {"company": "Acme Robotics Ltd.", "contact_name": "Wang Fang", "email": "Wang.Fang@Acme.example",
        "phone": "+86 138-0013-8000", "industry": "manufacturing", "region": "south", "product_line": "hvac",
        "company_size": 300, "engagement": 3, "source": "referral"}


@pytest.fixture
def org(app, deploy, make_user):
    """Deployed sales processes, a South team (manager + two reps), a director, finance, products."""
    deploy(*SALES_FILES)
    people = {name: make_user(role, username=name) for name, role in [
        ("rep_a", "sales_rep"), ("rep_b", "sales_rep"), ("manager", "sales_manager"), ("director", "director"),
        ("finance", "finance"), ("manager2", "sales_manager")]}
    with app.app_context(), transaction():
        for name in ("South", "North", "Healthcare"):
            team = Team(name=name, manager_id=people["manager"][0] if name == "South" else people["manager2"][0])
            db.session.add(team)
            db.session.flush()
            if name == "South":
                for member in ("manager", "rep_a", "rep_b"):
                    db.session.add(TeamMember(team_id=team.id, user_id=people[member][0]))
            else:
                db.session.add(TeamMember(team_id=team.id, user_id=people["manager2"][0]))
        db.session.add(Product(sku="HV-500", name="AirFlow 500", product_line="hvac", list_price=Decimal("20000"),
                               unit_cost=Decimal("11000")))
    with app.app_context():
        product_id = db.session.scalar(select(Product.id))
    return {"people": people, "product_id": product_id}


def _task(app, instance_id: int, element_id: str) -> tuple[int, int]:
    with app.app_context():
        task = db.session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                         HumanTask.element_id == element_id,
                                                         HumanTask.status == "open"))
        assert task is not None, f"no open task {element_id}"
        return task.id, db.session.get(ProcessInstance, instance_id).version


def _complete(client, app, instance_id, element_id, data, headers, expect=200):
    task_id, version = _task(app, instance_id, element_id)
    response = client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": data, "version": version},
                           headers=headers)
    assert response.status_code == expect, response.get_json()
    return response.get_json()


def _lead(app, lead_id) -> Lead:
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        db.session.expunge(lead)
        return lead


def test_lead_to_signed_contract_with_director_and_finance_approval(app, client, org):
    people = org["people"]
    with time_machine.travel(START, tick=False):
        created = client.post("/api/v1/leads", json=LEAD, headers=people["manager"][1])
        assert created.status_code == 201, created.get_json()
        lead = _lead(app, created.get_json()["lead"]["id"])
        assert (lead.score, lead.grade, lead.status) == (90, "A", "assigned")  # lead_scoring.dmn, referral ≥ 200
        owner = next(name for name in ("rep_a", "rep_b") if people[name][0] == lead.owner_id)
        rep = people[owner][1]
        instance = lead.instance_id

        _complete(client, app, instance, "contact_lead", {"contacted": True}, rep)
        _complete(client, app, instance, "qualify_lead", {"qualified": True, "estimated_value": 100000}, rep)
        opp_id = _lead(app, lead.id).opportunity_id
        assert opp_id

        missing = _complete(client, app, instance, "confirm_needs", {"needs": "short"}, rep, expect=422)
        assert {e["field"] for e in missing["errors"]} >= {"needs", "decision_maker", "budget"}
        _complete(client, app, instance, "confirm_needs", {"needs": "Cooling for two production halls",
                                                           "decision_maker": "COO", "budget": 120000}, rep)
        _complete(client, app, instance, "present_solution", {"demo_date": "2026-04-07",
                                                              "solution_document": "PROP-2026-17.pdf"}, rep)
        quote = client.post("/api/v1/quotes", json={"opportunity_id": opp_id, "discount_percent": "25",
                                                    "lines": [{"product_id": org["product_id"], "quantity": 6}]},
                            headers=rep)
        assert quote.status_code == 201, quote.get_json()
        quote_id = quote.get_json()["id"]
        assert quote.get_json()["totals"]["value"] == 90000.0
        assert client.post(f"/api/v1/quotes/{quote_id}/send", headers=rep).status_code == 409  # not approved

        _complete(client, app, instance, "prepare_quote", {"quote_id": quote_id}, rep)
        with app.app_context():
            assert db.session.get(Quote, quote_id).approval_chain == ["director", "finance"]
        assert client.get("/api/mobile/v1/approvals", headers=people["finance"][1]).get_json() == []
        pending = client.get("/api/mobile/v1/approvals", headers=people["director"][1]).get_json()
        assert [p["quote"]["id"] for p in pending] == [quote_id]
        assert pending[0]["account"]["name"] == "Acme Robotics Ltd." and pending[0]["quote"]["margin"] == 24000.0
        phone = {**people["director"][1], "X-Client": "flowdesk-ios/1.4", "Idempotency-Key": "d-1"}
        approved = client.post(f"/api/mobile/v1/approvals/{pending[0]['task_id']}/approve", json={}, headers=phone)
        assert approved.status_code == 200, approved.get_json()
        [finance_item] = client.get("/api/mobile/v1/approvals", headers=people["finance"][1]).get_json()
        assert client.post(f"/api/mobile/v1/approvals/{finance_item['task_id']}/approve", json={},
                           headers=people["finance"][1]).status_code == 200

        sent = client.post(f"/api/v1/quotes/{quote_id}/send", headers=rep)
        assert sent.status_code == 200 and sent.get_json()["status"] == "sent"
        _complete(client, app, instance, "negotiate", {"outcome": "accepted"}, rep)
        _complete(client, app, instance, "sign_contract", {"signed_by": "Wang Fang, COO"}, rep)
    with app.app_context():
        opp = db.session.get(Opportunity, opp_id)
        assert opp.stage == "won" and opp.amount == Decimal("90000.00")
        assert db.session.scalar(select(Contract.status).where(Contract.opportunity_id == opp_id)) == "signed"
        decisions = db.session.execute(select(AuditEvent.actor_id, AuditEvent.client, AuditEvent.data).where(
            AuditEvent.instance_id == instance, AuditEvent.element_id == "approve_discount",
            AuditEvent.event == "task_completed").order_by(AuditEvent.id)).all()
        assert [d.actor_id for d in decisions] == [people["director"][0], people["finance"][0]]
        assert "flowdesk-ios/1.4" in decisions[0].client and decisions[0].data["data"]["decision"] == "approve"
        assert db.session.get(ProcessInstance, instance).status == "completed"
    [account] = client.get("/api/v1/accounts", headers=rep).get_json()
    assert account["name"] == "Acme Robotics Ltd." and account["contacts"][0]["name"] == "Wang Fang"
    [contract] = client.get("/api/v1/contracts", headers=rep).get_json()
    assert contract["status"] == "signed" and contract["value"] == 90000.0
    other_rep = people["rep_b" if owner == "rep_a" else "rep_a"][1]
    assert client.get("/api/v1/contracts", headers=other_rep).get_json() == []
    history = client.get(f"/api/v1/opportunities/{opp_id}", headers=rep).get_json()["history"]
    assert [h["stage"] for h in history] == ["initial_contact", "needs_confirmed", "solution_demo",
                                             "quote_negotiation", "won"]


def test_uncontacted_lead_gets_a_reminder_then_goes_back_to_the_pool(app, client, org, poll_timers, run_worker):
    with time_machine.travel(START, tick=False) as clock:
        lead_id = client.post("/api/v1/leads", json=LEAD, headers=org["people"]["manager"][1]).get_json()["lead"]["id"]
        first_owner = _lead(app, lead_id).owner_id
        clock.move_to(START + timedelta(days=2, minutes=1))
        poll_timers()
        run_worker()
        lead = _lead(app, lead_id)
        assert lead.owner_id == first_owner and "Reminder" in lead.notes
        clock.move_to(START + timedelta(days=5, minutes=1))
        poll_timers()
        run_worker()
    lead = _lead(app, lead_id)
    assert lead.owner_id not in (None, first_owner) and lead.previous_owner_ids == [first_owner]
    assert lead.status == "assigned"
    _task(app, lead.instance_id, "contact_lead")  # the new owner has the task


def _to_quote_step(app, client, org):
    """A lead taken through contact, qualification, needs and demo: the rep's next step is the quote."""
    people = org["people"]
    lead_id = client.post("/api/v1/leads", json=LEAD, headers=people["manager"][1]).get_json()["lead"]["id"]
    lead = _lead(app, lead_id)
    rep = people["rep_a"][1] if lead.owner_id == people["rep_a"][0] else people["rep_b"][1]
    instance = lead.instance_id
    _complete(client, app, instance, "contact_lead", {"contacted": True}, rep)
    _complete(client, app, instance, "qualify_lead", {"qualified": True, "estimated_value": 50000}, rep)
    _complete(client, app, instance, "confirm_needs", {"needs": "Cooling for the new hall", "decision_maker": "CEO",
                                                       "budget": 60000}, rep)
    _complete(client, app, instance, "present_solution", {"demo_date": "2026-04-07", "solution_document": "P-1"}, rep)
    return instance, _lead(app, lead_id).opportunity_id, rep


def _to_approval(app, client, org, discount="25"):
    instance, opp_id, rep = _to_quote_step(app, client, org)
    quote_id = client.post("/api/v1/quotes", json={"opportunity_id": opp_id, "discount_percent": discount,
                                                   "lines": [{"product_id": org["product_id"], "quantity": 2}]},
                           headers=rep).get_json()["id"]
    _complete(client, app, instance, "prepare_quote", {"quote_id": quote_id}, rep)
    return instance, quote_id, rep


def test_idle_approver_is_reminded_then_escalated_reject_needs_a_reason_delegation_checks_authority(
        app, client, org, poll_timers, run_worker):
    people = org["people"]
    with time_machine.travel(START, tick=False) as clock:
        instance, quote_id, _ = _to_approval(app, client, org, discount="8")  # ≤ 10 %: the team lead
        [item] = client.get("/api/mobile/v1/approvals", headers=people["manager"][1]).get_json()
        assert client.get("/api/mobile/v1/approvals", headers=people["manager2"][1]).get_json() == []  # other team
        clock.move_to(START + timedelta(hours=4, minutes=1))
        poll_timers()
        run_worker()
        clock.move_to(START + timedelta(hours=24, minutes=2))
        poll_timers()
        run_worker()
        with app.app_context():
            events = [d["event"] for d in db.session.get(Quote, quote_id).decisions]
        assert events[:4] == ["routed", "reminded", "escalated", "routed"]
        assert client.get("/api/mobile/v1/approvals", headers=people["manager"][1]).get_json() == []
        [item] = client.get("/api/mobile/v1/approvals", headers=people["director"][1]).get_json()
        assert item["level"] == "director"

        no_reason = client.post(f"/api/mobile/v1/approvals/{item['task_id']}/reject", json={},
                                headers=people["director"][1])
        assert no_reason.status_code == 422 and no_reason.get_json()["errors"][0]["field"] == "reason"
        to_rep = client.post(f"/api/mobile/v1/approvals/{item['task_id']}/delegate",
                             json={"delegate_id": people["rep_a"][0]}, headers=people["director"][1])
        assert to_rep.status_code == 422  # a rep has no approval authority
        to_manager = client.post(f"/api/mobile/v1/approvals/{item['task_id']}/delegate",
                                 json={"delegate_id": people["manager"][0]}, headers=people["director"][1])
        assert to_manager.status_code == 422  # lower than a director
        with app.app_context(), transaction():
            db.session.get(User, people["finance"][0])  # finance has director-level authority
        ok = client.post(f"/api/mobile/v1/approvals/{item['task_id']}/delegate",
                         json={"delegate_id": people["finance"][0]}, headers=people["director"][1])
        assert ok.status_code == 200, ok.get_json()
        rejected = client.post(f"/api/mobile/v1/approvals/{item['task_id']}/reject",
                               json={"reason": "margin below floor"}, headers=people["finance"][1])
        assert rejected.status_code == 200, rejected.get_json()
    with app.app_context():
        assert db.session.get(Quote, quote_id).status == "rejected"
    _task(app, instance, "prepare_quote")  # back to the rep to revise


def test_duplicates_in_any_formatting_are_merged_or_flagged(app, client, org):
    manager = org["people"]["manager"][1]
    with time_machine.travel(START, tick=False):
        first = client.post("/api/v1/leads", json=LEAD, headers=manager).get_json()
        assert first["outcome"] == "created"
        same_phone = {**LEAD, "email": None, "phone": "(0086) 138 0013 8000", "contact_name": "W. Fang"}
        same_email = {**LEAD, "phone": None, "email": " wang.fang+expo@ACME.example "}
        for duplicate in (same_phone, same_email):
            response = client.post("/api/v1/leads", json=duplicate, headers=manager).get_json()
            assert response["outcome"] == "merged" and response["lead"]["id"] == first["lead"]["id"]
        same_company = {**LEAD, "email": "li@acme.example", "phone": "+86 21 5555 0199",
                        "company": "ACME ROBOTICS CO., LIMITED"}
        flagged = client.post("/api/v1/leads", json=same_company, headers=manager).get_json()
        assert flagged["outcome"] == "flagged" and flagged["lead"]["duplicate_of_id"] == first["lead"]["id"]
        web = client.post("/api/v1/public/leads", json={**LEAD, "phone": "138.0013.8000", "email": None})
        assert web.status_code == 202 and web.get_json() == {"outcome": "merged"}
        bot = client.post("/api/v1/public/leads", json={**LEAD, "email": "bot@spam.example", "phone": None,
                                                        "website": "http://spam"})
        assert bot.status_code == 202
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Lead.id))) == 2


def test_csv_import_reports_bad_rows_and_imports_the_rest(app, client, org):
    csv_text = ("company,contact_name,email,phone,industry,region,product_line,company_size\n"
                "Orion Foods,Chen Li,chen@orion.example,,food,south,hvac,120\n"
                ",No Company,x@y.example,,,,,\n"
                "Delta Labs,Zhou Min,not-an-email,,healthcare,,medical,40\n"
                "Orion Foods,Chen Li,CHEN@orion.example,,food,south,hvac,120\n"
                "Polar Cold,Sun Yu,,+86 21 6666 0000,logistics,north,hvac,abc\n"
                "Polar Cold,Sun Yu,,+86 21 6666 0000,logistics,north,hvac,900\n")
    with time_machine.travel(START, tick=False):
        response = client.post("/api/v1/leads/import", data={"file": (__import__("io").BytesIO(csv_text.encode()),
                                                                      "leads.csv")},
                               headers=org["people"]["manager"][1], content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert (report["created"], report["merged"], report["accepted"]) == (2, 1, 3)
    assert [(r["line"], r["reason"].split(":")[0]) for r in report["rejected"]] == [
        (3, "company"), (4, "email"), (6, "company_size")]
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Lead.id))) == 2


def test_reps_only_see_and_change_their_own_records(app, client, org):
    people = org["people"]
    with time_machine.travel(START, tick=False):
        instance, quote_id, rep = _to_approval(app, client, org, discount="25")
        owner = "rep_a" if rep == people["rep_a"][1] else "rep_b"
        other = people["rep_b" if owner == "rep_a" else "rep_a"]
        with app.app_context():
            lead_id = db.session.scalar(select(Lead.id))
            opp_id = db.session.scalar(select(Opportunity.id))
        assert client.get(f"/api/v1/leads/{lead_id}", headers=rep).status_code == 200
        assert client.get(f"/api/v1/leads/{lead_id}", headers=other[1]).status_code == 404
        assert client.get(f"/api/v1/opportunities/{opp_id}", headers=other[1]).status_code == 404
        assert client.get("/api/v1/leads", headers=other[1]).get_json() == []
        assert client.get("/api/v1/opportunities", headers=other[1]).get_json() == []
        assert client.post(f"/api/v1/quotes/{quote_id}/send", headers=other[1]).status_code == 404
        assert client.post("/api/v1/quotes", json={"opportunity_id": opp_id, "lines": [
            {"product_id": org["product_id"]}]}, headers=other[1]).status_code == 404
        assert client.get("/api/mobile/v1/approvals", headers=other[1]).status_code == 403  # reps approve nothing
        [item] = client.get("/api/mobile/v1/approvals", headers=people["director"][1]).get_json()
        assert client.post(f"/api/mobile/v1/approvals/{item['task_id']}/approve", json={},
                           headers=people["manager2"][1]).status_code == 404  # not theirs to decide
        task_id, version = _task(app, instance, "approve_discount")
        stolen = client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": {"decision": "approve"},
                                                                        "version": version}, headers=other[1])
        assert stolen.status_code == 403
        # The South manager sees the team's records; the other team's manager does not; the director all.
        assert client.get(f"/api/v1/leads/{lead_id}", headers=people["manager"][1]).status_code == 200
        assert client.get(f"/api/v1/leads/{lead_id}", headers=people["manager2"][1]).status_code == 404
        assert client.get(f"/api/v1/opportunities/{opp_id}", headers=people["director"][1]).status_code == 200


def test_funnel_on_the_seeded_data_equals_an_independent_sql_computation(app, client, deploy):
    from server.seeding import load_seeds

    deploy(*SALES_FILES)
    with app.app_context(), transaction():
        load_seeds()
    with app.app_context():
        director = db.session.scalar(select(User).where(User.username == "director"))
        from server.auth.services import issue_tokens

        with transaction():
            token = issue_tokens(director, "pytest")["access_token"]
        rows = db.session.execute(db.text(
            "SELECT stage, COUNT(*), COALESCE(SUM(amount), 0) FROM opportunities GROUP BY stage")).all()
        lost = dict(db.session.execute(db.text(
            "SELECT lost_reason, COUNT(*) FROM opportunities WHERE stage = 'lost' GROUP BY lost_reason")).all())
        reached = dict(db.session.execute(db.text(
            "SELECT stage, COUNT(DISTINCT opportunity_id) FROM stage_changes GROUP BY stage")).all())
    funnel = client.get("/api/v1/reports/funnel", headers={"Authorization": f"Bearer {token}"}).get_json()
    by_stage = {s["stage"]: s for s in funnel["stages"]}
    assert sum(count for _, count, _ in rows) == funnel["opportunities"] > 10
    for stage, count, value in rows:
        assert by_stage[stage]["count"] == count and by_stage[stage]["value"] == pytest.approx(float(value))
    assert {r["reason"]: r["count"] for r in funnel["lost_reasons"]} == lost
    assert by_stage["initial_contact"]["conversion_to_next"] == pytest.approx(
        round(100 * reached.get("needs_confirmed", 0) / reached["initial_contact"], 1))
    probability = {"initial_contact": 0.1, "needs_confirmed": 0.25, "solution_demo": 0.5, "quote_negotiation": 0.75}
    assert funnel["weighted_forecast"] == pytest.approx(
        sum(float(value) * probability[stage] for stage, _, value in rows if stage in probability), abs=0.01)


def _browser_login(client, username: str) -> str:
    page = client.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/login", data={"username": username, "password": "password-123",
                                       "csrf_token": csrf}).status_code == 302
    return csrf


def test_approval_page_and_funnel_page(app, client, org):
    with time_machine.travel(START, tick=False):
        _, quote_id, _ = _to_approval(app, client, org, discount="15")  # ≤ 20 %: the director
        browser = app.test_client()
        csrf = _browser_login(browser, "director")
        page = browser.get("/approvals").get_data(as_text=True)
        assert "Acme Robotics Ltd." in page and 'name="viewport"' in page and "15.0 %" in page
        task_id = int(re.search(r'action="/approvals/(\d+)"', page).group(1))
        no_reason = browser.post(f"/approvals/{task_id}", data={"action": "reject", "csrf_token": csrf})
        assert no_reason.status_code == 422 and "reason" in no_reason.get_data(as_text=True)
        assert browser.post(f"/approvals/{task_id}", data={"action": "approve"}).status_code == 422  # no CSRF
        done = browser.post(f"/approvals/{task_id}", data={"action": "approve", "csrf_token": csrf})
        assert done.status_code == 302
        assert "Nothing waiting" in browser.get(done.headers["Location"]).get_data(as_text=True)
        funnel = browser.get("/sales/funnel")
        assert funnel.status_code == 200 and "quote negotiation" in funnel.get_data(as_text=True)
        history = browser.get("/approvals/history").get_data(as_text=True)
        assert "approve" in history and "Acme" in history
    with app.app_context():
        assert db.session.get(Quote, quote_id).status == "approved"


def test_the_rep_requests_a_discount_from_the_opportunity_page(app, client, org):
    with time_machine.travel(START, tick=False):
        _, opp_id, rep = _to_quote_step(app, client, org)
        owner = client.get(f"/api/v1/opportunities/{opp_id}", headers=rep).get_json()["owner_id"]
        username = next(name for name, (user_id, _) in org["people"].items() if user_id == owner)
        browser = app.test_client()
        csrf = _browser_login(browser, username)
        page = browser.get(f"/sales/opportunities/{opp_id}").get_data(as_text=True)
        assert "Request discount" in page
        form = {"csrf_token": csrf, "product_0": str(org["product_id"]), "quantity_0": "2"}
        bad = browser.post(f"/sales/opportunities/{opp_id}", data={**form, "discount_percent": "120"})
        assert bad.status_code == 422 and "0–100" in bad.get_data(as_text=True)
        sent = browser.post(f"/sales/opportunities/{opp_id}", data={**form, "discount_percent": "15"})
        assert sent.status_code == 302
        assert "pending" in browser.get(sent.headers["Location"]).get_data(as_text=True)
        board = browser.get("/sales/pipeline").get_data(as_text=True)
        assert "quote negotiation" in board
        assert "Acme" in browser.get("/sales/leads").get_data(as_text=True)
    with app.app_context():
        quote = db.session.scalars(db.select(Quote).where(Quote.opportunity_id == opp_id)).one()
        assert quote.status == "pending" and str(quote.discount_percent) == "15.00"


def test_second_open_deal_for_the_same_account_and_line_is_flagged(app, client, org):
    with time_machine.travel(START, tick=False):
        _to_approval(app, client, org)
        other = {**LEAD, "contact_name": "Li Na", "email": "li.na@acme.example", "phone": "+86 21 5555 0100",
                 "company": "Acme Robotics Ltd."}
        lead_id = client.post("/api/v1/leads", json=other, headers=org["people"]["manager"][1]).get_json()["lead"]["id"]
        lead = _lead(app, lead_id)
        rep = next(h for uid, h in org["people"].values() if uid == lead.owner_id)
        _complete(client, app, lead.instance_id, "contact_lead", {"contacted": True}, rep)
        _complete(client, app, lead.instance_id, "qualify_lead", {"qualified": True, "estimated_value": 1000}, rep)
    with app.app_context():
        first, second = db.session.scalars(select(Opportunity).order_by(Opportunity.id)).all()
        assert second.flagged_duplicate_of_id == first.id and second.account_id == first.account_id


def test_the_public_lead_form_is_rate_limited(app, client, org, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LEAD_FORM", 2)  # what FLOWDESK_RATE_LEAD_FORM=2 sets
    answers = [client.post("/api/v1/public/leads", json={**LEAD, "email": f"p{n}@x.example", "phone": None,
                                                         "company": f"Co {n}"}) for n in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert 0 < int(answers[2].headers["Retry-After"]) <= 60 and answers[2].mimetype == "application/problem+json"


def test_a_key_account_without_activity_for_k_days_raises_a_reminder(app, org, poll_timers, run_worker):
    from server.aftersales.models import Account
    from server.sales import accounts

    with time_machine.travel(START, tick=False) as clock:
        with app.app_context(), transaction():
            account = Account(name="Quiet Key Co", tier="key", created_at=START)
            db.session.add(account)
            db.session.flush()
            accounts.watch_key_account(account)
            accounts.watch_key_account(account)  # once only
            account_id = account.id
        clock.move_to(START + timedelta(days=14, minutes=1))
        poll_timers()
        run_worker()
    with app.app_context():
        reminders = db.session.scalars(select(AuditEvent.data).where(AuditEvent.event == "key_account_reminder")).all()
        assert [r["account_id"] for r in reminders] == [account_id]
        watchers = db.session.scalars(select(ProcessInstance.id).where(
            ProcessInstance.business_key == f"ACCOUNT-{account_id}")).all()
        assert len(watchers) == 1
