"""After-sales end to end through HTTP: QR report → nearest engineer (checked
against an exhaustive geopy scan) → decline → next → accept → parts →
payment → completion → rating → follow-up; plus offer timeouts, SLA
escalations, dispatcher override and the manual queue. Real worker, real
timers, the clock moved with time-machine."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import time_machine
from sqlalchemy import select

from server.aftersales import service_requests, sla
from server.aftersales.models import Engineer, Rating, ServiceRequest, StockLevel, WorkOrderEvent
from server.db import transaction
from server.extensions import db
from server.processes.models import Timer

from .aftersales_world import SITE, START, _by_id, _expected_engineer, _open_tasks, _report, _request


def test_qr_report_to_rating_follow_up(app, client, world, run_worker, poll_timers):
    with time_machine.travel(START, tick=False):
        request_id = _report(client, world["token"])
        req = _request(app, request_id)
        first = _expected_engineer(app)
        assert req.status == "offered" and req.engineer_id == first
        assert _open_tasks(app, request_id) == ["accept_offer"]
        assert req.response_due_at == START + timedelta(minutes=120)  # normal tier (sla_targets.dmn)

        # The offered engineer sees it; the others do not.
        offered = client.get("/api/mobile/v1/work-orders?scope=offered", headers=_by_id(world, first)["headers"])
        assert [w["id"] for w in offered.get_json()["items"]] == [request_id]
        other = next(e for e in world["engineers"] if e["id"] != first)
        assert client.get(f"/api/mobile/v1/work-orders/{request_id}", headers=other["headers"]).status_code == 404

        # Decline → the next nearest (never the one who declined).
        declined = client.post(f"/api/mobile/v1/work-orders/{request_id}/decline", json={"reason": "stuck in traffic"},
                               headers=_by_id(world, first)["headers"])
        assert declined.status_code == 200, declined.get_json()
        second = _expected_engineer(app, exclude=[first])
        req = _request(app, request_id)
        assert req.engineer_id == second != first and req.declined_engineer_ids == [first]

        me = _by_id(world, second)["headers"]
        h = {**me, "Idempotency-Key": "accept-1"}
        accepted = client.post(f"/api/mobile/v1/work-orders/{request_id}/accept", headers=h)
        assert accepted.status_code == 200, accepted.get_json()
        detail = accepted.get_json()
        assert detail["status"] == "accepted" and detail["sla"]["response"]["state"] == "met"
        again = client.post(f"/api/mobile/v1/work-orders/{request_id}/accept", headers=h)  # phone retry
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"

        for status in ("en_route", "on_site"):
            moved = client.post(f"/api/mobile/v1/work-orders/{request_id}/status",
                                json={"status": status, "lat": SITE[0], "lon": SITE[1]}, headers=me)
            assert moved.status_code == 200, moved.get_json()
        assert _open_tasks(app, request_id) == ["repair"]

        consumed = client.post(f"/api/mobile/v1/work-orders/{request_id}/parts/consume",
                               json={"part_id": world["part"], "quantity": 2, "source": "van"},
                               headers={**me, "Idempotency-Key": "consume-1"})
        assert consumed.status_code == 201, consumed.get_json()
        done = client.post(f"/api/mobile/v1/work-orders/{request_id}/work-done",
                           json={"fixed": True, "notes": "replaced the door belt", "labour_minutes": 90}, headers=me)
        assert done.status_code == 200, done.get_json()
        assert _open_tasks(app, request_id) == ["take_payment"]
        # elevator: 120/h × 1.5 h + 90 call-out + 2 × 55 parts (service_pricing.dmn), warranty expired
        assert _request(app, request_id).amount_due == Decimal("380.00")

        wrong = client.post(f"/api/mobile/v1/work-orders/{request_id}/payment",
                            json={"method": "card", "amount": "100.00"}, headers=me)
        assert wrong.status_code == 422
        assert {e["field"] for e in wrong.get_json()["errors"]} == {"amount", "reference"}
        pay = {"method": "card", "amount": "380.00", "reference": "POS-7781"}
        paid = client.post(f"/api/mobile/v1/work-orders/{request_id}/payment", json=pay,
                           headers={**me, "Idempotency-Key": "pay-1"})
        assert paid.status_code == 201, paid.get_json()
        replay = client.post(f"/api/mobile/v1/work-orders/{request_id}/payment", json=pay,
                             headers={**me, "Idempotency-Key": "pay-1"})
        assert replay.get_json() == paid.get_json()

        sheet = client.post(f"/api/mobile/v1/work-orders/{request_id}/complete", json={"summary": "all good"},
                            headers=me).get_json()
        assert sheet["status"] == "closed" and sheet["payment"]["receipt_number"].startswith("RC-")
        assert sheet["rating_qr_svg"].startswith("<svg")
        rating_path = sheet["rating_url"].split("://", 1)[1].split("/", 1)[1]

        assert client.get(f"/{rating_path}").status_code == 200
        rated = client.post(f"/{rating_path}", data={"stars": "2", "comment": "took long"})
        assert rated.status_code == 201
        assert client.post(f"/{rating_path}", data={"stars": "5"}).status_code == 410  # single use
        run_worker()
    assert _open_tasks(app, request_id) == ["follow_up_low_rating"]
    with app.app_context():
        assert db.session.scalar(select(Rating.stars).where(Rating.request_id == request_id)) == 2
        stock = db.session.scalar(select(StockLevel).where(StockLevel.location == f"van:{second}"))
        assert stock.quantity == 1
        statuses = db.session.scalars(select(WorkOrderEvent.status).where(WorkOrderEvent.request_id == request_id)
                                      .order_by(WorkOrderEvent.id)).all()
        assert statuses[:5] == ["reported", "offered", "declined", "offered", "accepted"]
        assert "on_site" in statuses and statuses[-1] == "rated"
        assert db.session.get(Engineer, second).open_jobs == 0


def test_offer_timeout_redispatches_and_sla_escalates(app, client, world, poll_timers, run_worker):
    with time_machine.travel(START, tick=False) as clock:
        request_id = _report(client, world["token"])
        first = _request(app, request_id).engineer_id
        clock.move_to(START + timedelta(minutes=11))  # offer timeout PT10M
        poll_timers()
        run_worker()
        req = _request(app, request_id)
        assert req.engineer_id not in (None, first) and first in req.declined_engineer_ids
        assert req.engineer_id == _expected_engineer(app, exclude=[first])

        clock.move_to(START + timedelta(minutes=91))  # 75 % of the 2 h response target
        poll_timers()
        run_worker()
        assert sla.sla_state(_request(app, request_id), START + timedelta(minutes=91))["response"]["state"] \
            == "warning"
        clock.move_to(START + timedelta(minutes=121))
        poll_timers()
        run_worker()
        req = _request(app, request_id)
        assert {"response_warning", "response_breach"} <= set(req.sla_events)
        assert "review_response_breach" in _open_tasks(app, request_id)
        # Offers kept timing out meanwhile: nobody is offered twice.
        assert len(req.declined_engineer_ids) == len(set(req.declined_engineer_ids))


def test_nobody_available_goes_to_the_dispatcher_who_overrides(app, client, world, poll_timers, run_worker):
    with app.app_context(), transaction():
        for engineer in db.session.scalars(select(Engineer)):
            engineer.status = "off"
    with time_machine.travel(START, tick=False) as clock:
        request_id = _report(client, world["token"])
        assert _open_tasks(app, request_id) == ["dispatch_manually"]
        clock.move_to(START + timedelta(minutes=16))
        poll_timers()
        run_worker()
        assert _request(app, request_id).escalated_at is not None

        chosen = world["engineers"][3]
        response = client.post(f"/api/v1/service-requests/{request_id}/dispatch", json={"engineer_id": chosen["id"]},
                               headers=world["dispatcher"])
        assert response.status_code == 200, response.get_json()
        assert _request(app, request_id).engineer_id == chosen["id"]
        assert _open_tasks(app, request_id) == ["accept_offer"]

        # Override again while the offer is pending: the offer moves (via the BPMN message boundary).
        other = world["engineers"][4]
        response = client.post(f"/api/v1/service-requests/{request_id}/dispatch", json={"engineer_id": other["id"]},
                               headers=world["dispatcher"])
        assert response.status_code == 200, response.get_json()
        assert _request(app, request_id).engineer_id == other["id"]
        with app.app_context():
            assert db.session.get(Engineer, chosen["id"]).open_jobs == 0
            assert db.session.get(Engineer, other["id"]).open_jobs == 1
        detail = client.get(f"/api/v1/service-requests/{request_id}", headers=world["dispatcher"]).get_json()
        assert [e["status"] for e in detail["events"]][-2:] == ["offered", "dispatch_override"]


def test_an_engineer_becoming_available_serves_the_waiting_queue_vip_first(app, client, world, run_worker):
    with time_machine.travel(START - timedelta(days=1), tick=False), app.app_context(), transaction():
        for engineer in db.session.scalars(select(Engineer)):
            engineer.status = "off"
            engineer.open_jobs = 2  # one slot left each (max_open_jobs 3 in the BPMN)
        vip = service_requests.create_account("Hospital", "vip")
        db.session.flush()
        vip_asset = service_requests.create_asset(vip, "SN-VIP", "LiftLine X4", "elevator", "Ward 3",
                                                  SITE[0] + 0.05, SITE[1])
        db.session.flush()
        vip_token = service_requests.asset_report_token(vip_asset)
    with time_machine.travel(START, tick=False):
        normal_id = _report(client, world["token"])
        vip_id = _report(client, vip_token)
        nearest_to_normal = world["engineers"][0]
        response = client.post("/api/mobile/v1/me/status", json={"status": "available"},
                               headers=nearest_to_normal["headers"])
        assert response.status_code == 200
        run_worker()
    # The one free slot went to the VIP request although the normal one is nearer and older.
    assert _request(app, vip_id).engineer_id == nearest_to_normal["id"]
    assert _request(app, normal_id).engineer_id is None
    assert _open_tasks(app, normal_id) == ["dispatch_manually"]


def test_the_offer_and_sla_timers_take_their_durations_from_the_dmn_tables(app, client, world, deploy):
    # A designer shortens the windows by redeploying the two tables (decimal minutes count as seconds).
    workflows = Path(__file__).resolve().parent.parent / "workflows"
    sla_table = workflows.joinpath("sla_targets.dmn").read_text().replace("<text>120</text>", "<text>0.5</text>")
    timings = workflows.joinpath("service_timings.dmn").read_text()
    for old, new in (("PT10M", "PT20S"), ("PT15M", "PT30S"), ("P14D", "PT1M")):
        timings = timings.replace(f'"{old}"', f'"{new}"')
    deploy("after_sales_service.bpmn", "service_pricing.dmn",
           files={"sla_targets.dmn": sla_table, "service_timings.dmn": timings})
    with time_machine.travel(START, tick=False):
        request_id = _report(client, world["token"])
        with app.app_context():
            req = db.session.get(ServiceRequest, request_id)
            due = {t.element_id: t.due_at - START for t in db.session.scalars(
                select(Timer).where(Timer.instance_id == req.instance_id))}
            assert req.response_due_at == START + timedelta(seconds=30)
    assert due == {"offer_timeout": timedelta(seconds=20), "response_warning": timedelta(seconds=22),
                   "response_breach": timedelta(seconds=30), "resolution_warning": timedelta(minutes=1080),
                   "resolution_breach": timedelta(minutes=1440)}
