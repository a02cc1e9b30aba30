"""Browser tests for the approver (on a phone), the customer (QR report, later the rating) and the
dispatcher (dispatch override). Each saves screenshots under test-output/browser/<test>/."""

from __future__ import annotations

import time_machine
from sqlalchemy import select

from server.aftersales.models import Rating, ServiceRequest
from server.extensions import db
from server.sales.models import Quote

from ..aftersales_world import SITE, START, _expected_engineer, _report, _request
from ..test_sales_flow import START as SALES_START
from ..test_sales_flow import _to_approval, org  # noqa: F401 - the fixture is used by name
from .conftest import sign_in


def test_an_approver_on_a_phone_approves_a_discount(app, client, org, open_page, output_dir):  # noqa: F811
    with time_machine.travel(SALES_START, tick=True):
        _, quote_id, _ = _to_approval(app, client, org, discount="15")  # ≤ 20 %: the director decides
        page = open_page(375, 812)
        sign_in(page, "director")
        page.goto("/approvals")
        card = page.locator("section.card", has_text="Acme Robotics Ltd.")
        assert "15.0 %" in card.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling on a phone"
        page.screenshot(path=str(output_dir / "inbox-375.png"), full_page=True)
        card.get_by_role("button", name="Approve").click()
        assert "Nothing waiting for you." in page.inner_text("main")
        page.screenshot(path=str(output_dir / "approved-375.png"), full_page=True)
        page.goto("/approvals/history")
        assert "approve" in page.inner_text("main")
    with app.app_context():
        assert db.session.get(Quote, quote_id).status == "approved"


def _finish_job(client, world, app, request_id: int) -> str:
    """The engineer's side through the mobile API: accept, travel, repair, take payment, complete."""
    engineer = next(e for e in world["engineers"] if e["id"] == _request(app, request_id).engineer_id)
    me, base = engineer["headers"], f"/api/mobile/v1/work-orders/{request_id}"
    assert client.post(f"{base}/accept", headers=me).status_code == 200
    for status in ("en_route", "on_site"):
        assert client.post(f"{base}/status", json={"status": status, "lat": SITE[0], "lon": SITE[1]},
                           headers=me).status_code == 200
    assert client.post(f"{base}/work-done", json={"fixed": True, "notes": "new belt", "labour_minutes": 60},
                       headers=me).status_code == 200
    due = str(_request(app, request_id).amount_due)
    assert client.post(f"{base}/payment", json={"method": "cash", "amount": due}, headers=me).status_code == 201
    sheet = client.post(f"{base}/complete", json={"summary": "fixed"}, headers=me).get_json()
    return "/" + sheet["rating_url"].split("://", 1)[1].split("/", 1)[1]


def test_a_customer_reports_from_the_qr_link_and_later_rates_the_job(app, client, world, open_page, output_dir):
    with time_machine.travel(START, tick=True):
        page = open_page(390, 844)
        page.goto(f"/report/{world['token']}")
        assert "LiftLine S2" in page.inner_text("main")
        page.get_by_role("button", name="Send report").click()  # nothing described yet
        assert "Please describe the fault." in page.get_by_role("alert").inner_text()
        page.get_by_label("What is wrong?").fill("The lift stops between floors")
        page.get_by_label("Your name").fill("Chen Jie")
        page.get_by_role("button", name="Send report").click()
        assert "Thank you — we are on it" in page.inner_text("main")
        page.screenshot(path=str(output_dir / "reported.png"), full_page=True)
        page.get_by_role("link", name="Follow your request").click()
        assert page.inner_text("#request-status") == "offered"
        with app.app_context():
            request_id = db.session.scalar(select(ServiceRequest.id))

        rating_path = _finish_job(client, world, app, request_id)
        page.goto(rating_path)
        page.get_by_label("5★").check()
        page.get_by_label("Comment (optional)").fill("Quick and tidy")
        page.get_by_role("button", name="Send rating").click()
        assert "Thank you for rating the visit." in page.inner_text("main")
        page.screenshot(path=str(output_dir / "rated.png"), full_page=True)
        again = page.goto(rating_path)
        assert again.status == 410 and "already been rated" in page.inner_text("main")
        page.screenshot(path=str(output_dir / "used-link.png"), full_page=True)
        assert page.goto("/report/forged-token").status == 403
    with app.app_context():
        assert db.session.scalar(select(Rating.stars).where(Rating.request_id == request_id)) == 5


def test_a_dispatcher_overrides_a_dispatch(app, client, world, make_user, open_page, output_dir):
    make_user("dispatcher", username="desk")
    with time_machine.travel(START, tick=True):
        request_id = _report(client, world["token"])
        offered_to = _request(app, request_id).engineer_id
        chosen = next(e for e in world["engineers"] if e["id"] != offered_to)
        assert offered_to == _expected_engineer(app)
        page = open_page()
        sign_in(page, "desk")
        page.goto("/desk/service")
        row = page.locator("tr", has=page.get_by_role("link", name=str(request_id), exact=True))
        assert "offered" in row.inner_text()
        clock = row.locator("[data-due] .left").first
        first = clock.inner_text()
        page.wait_for_timeout(1100)
        assert clock.inner_text() != first, "the SLA clock counts down live"
        page.screenshot(path=str(output_dir / "desk.png"), full_page=True)
        row.get_by_role("link", name=str(request_id), exact=True).click()
        page.get_by_label("Send to engineer").select_option(str(chosen["id"]))
        page.get_by_role("button", name="Dispatch").click()
        assert "dispatched" in page.get_by_role("status").inner_text()
        assert page.inner_text("#current-engineer") == f"Engineer {chosen['user_id']}"
        page.screenshot(path=str(output_dir / "overridden.png"), full_page=True)
        page.goto("/desk/engineers")
        page.wait_for_selector("#engineer-map[data-rendered='true']")
        assert page.locator("#engineer-map path.fd-marker").count() == len(world["engineers"])
    req = _request(app, request_id)
    assert req.engineer_id == chosen["id"] and req.status == "offered"
