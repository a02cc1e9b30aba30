"""The after-sales test world: the deployed process, a customer asset, five
engineers with phones, a dispatcher and a service manager — and helpers to
look at requests. Registered as a pytest plugin by conftest."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from server.aftersales import service_requests
from server.aftersales.dispatch import DispatchRules, exhaustive_choice
from server.aftersales.engineers import create_engineer
from server.aftersales.models import Engineer, Part, ServiceRequest, StockLevel
from server.db import transaction
from server.extensions import db
from server.processes.models import HumanTask

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SITE = (31.2304, 121.4737)
# Engineers around the site (offsets in degrees); the first two are closest.
OFFSETS = [(0.010, 0.004), (-0.006, 0.013), (0.030, -0.020), (0.002, 0.060), (-0.050, -0.010)]


@pytest.fixture
def world(app, deploy, make_user):
    """Deployed after-sales process, a customer asset, five engineers with phones, a dispatcher."""
    deploy("after_sales_service.bpmn", "sla_targets.dmn", "service_timings.dmn", "service_pricing.dmn")
    engineers = []
    for n, (dlat, dlon) in enumerate(OFFSETS):
        user_id, headers = make_user("engineer", username=f"field{n}")
        engineers.append({"user_id": user_id, "headers": headers, "lat": SITE[0] + dlat, "lon": SITE[1] + dlon})
    dispatcher_id, dispatcher = make_user("dispatcher")
    _, manager = make_user("service_manager")
    # Signed the day before the tests' clock starts (a token signed "in the future" is refused).
    with time_machine.travel(START - timedelta(days=1), tick=False), app.app_context(), transaction():
        account = service_requests.create_account("Bund Tower Offices", "normal")
        db.session.flush()
        asset = service_requests.create_asset(account, "SN-1", "LiftLine S2", "elevator", "Bund 1", *SITE,
                                              warranty_end=date(2020, 1, 1))
        for e in engineers:
            row = create_engineer(f"Engineer {e['user_id']}", ["elevator", "hvac"], e["lat"], e["lon"],
                                  user_id=e["user_id"], shift_start="00:00", shift_end="00:00")
            db.session.flush()
            e["id"] = row.id
        part = Part(sku="EL-DRV-01", name="Door drive belt", product_line="elevator", unit_price=Decimal("55.00"))
        db.session.add(part)
        db.session.flush()
        for e in engineers:
            db.session.add(StockLevel(part_id=part.id, location=f"van:{e['id']}", quantity=3, reserved=0))
        db.session.flush()
        ids = {"asset": asset.id, "part": part.id}
        token = service_requests.asset_report_token(asset)
    return {"engineers": engineers, "dispatcher": dispatcher, "dispatcher_id": dispatcher_id, "manager": manager,
            "token": token, **ids}


def _request(app, request_id: int) -> ServiceRequest:
    with app.app_context():
        req = db.session.get(ServiceRequest, request_id)
        db.session.expunge(req)
        return req


def _open_tasks(app, request_id: int) -> list[str]:
    with app.app_context():
        req = db.session.get(ServiceRequest, request_id)
        return sorted(db.session.scalars(select(HumanTask.element_id).where(
            HumanTask.instance_id == req.instance_id, HumanTask.status == "open")).all())


def _expected_engineer(app, exclude=()):
    """The exhaustive geopy scan over every engineer row: what dispatch must pick."""
    with app.app_context():
        rows = db.session.execute(select(Engineer)).scalars().all()
        rules = DispatchRules(skill="elevator")
        choice = exhaustive_choice(SITE[0], SITE[1], rows, rules, datetime.now(UTC), frozenset(exclude))
        return choice.id if choice else None


def _report(client, token: str, description="The lift stops between floors") -> int:
    response = client.post(f"/report/{token}", data={"description": description, "name": "Li Wei",
                                                     "phone": "+86 21 5555 0101"})
    assert response.status_code == 201, response.get_data(as_text=True)
    return int(re.search(r"Request <strong>#(\d+)</strong>", response.get_data(as_text=True)).group(1))


def _by_id(world, engineer_id):
    return next(e for e in world["engineers"] if e["id"] == engineer_id)
