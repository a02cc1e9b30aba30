"""The authorisation matrix: every role (and anonymous) × every endpoint → the expected outcome.

``ACCESS`` below is the specification, written out: an endpoint missing from it fails the test, so a new
route must be declared here. Allowed callers must get past authorisation (neither 401 nor 403, and
never a 5xx even with bogus ids and empty bodies); others get 403, anonymous callers 401. Public
endpoints do their own checks (signed tokens, credentials) and must never fail with a 5xx."""

from __future__ import annotations

import re

import pytest

from server.auth.models import ROLES

DESK = {"dispatcher", "service_manager", "admin"}
DESIGN = {"designer", "admin"}
SALES = {"sales_rep", "sales_manager", "director", "finance", "admin"}
APPROVERS = {"sales_manager", "director", "finance", "admin"}
ENGINEER = {"engineer", "admin"}  # an admin passes the role check but has no engineer profile (403)
ANY = set(ROLES)
PUBLIC = "public"

ACCESS: dict[str, set[str] | str] = {
    # platform
    "api-docs.openapi_json": PUBLIC, "health.health": PUBLIC,
    "metrics": {"admin"},  # marked public: it checks an admin's token or the scrape token itself
    "ops_pages.queues_page": {"admin"}, "ops_pages.failed_job_action": {"admin"},
    "auth.token": PUBLIC, "auth.refresh": PUBLIC, "auth_pages.login_page": PUBLIC, "auth_pages.logout_page": PUBLIC,
    "auth.logout": ANY, "auth.me": ANY,
    "web.home": ANY, "web.task_inbox": ANY, "web.task_page": ANY, "web.set_language": PUBLIC,
    **{f"designer_pages.{name}": DESIGN for name in (
        "process_list", "process_detail", "process_edit", "start_from_page", "instance_list", "instance_detail",
        "instance_action")},
    **{f"processes.{name}": DESIGN for name in (
        "deploy", "get_instance", "instance_audit", "list_instances", "list_processes", "list_versions", "resume",
        "retry", "send_message", "start_instance", "suspend", "terminate", "validate_bundle", "version_xml")},
    "processes.assign": {"designer", "admin", "sales_manager", "director", "dispatcher", "service_manager"},
    **{f"processes.{name}": ANY for name in ("claim", "complete", "get_task", "my_tasks")},
    # after-sales
    **{f"aftersales.{name}": DESK for name in (
        "asset_qr", "create_request", "get_asset", "get_request", "list_assets", "list_engineers", "list_requests",
        "override_dispatch", "service_report")},
    **{f"aftersales_pages.{name}": DESK for name in ("desk_page", "report_view", "request_page", "engineers_page")},
    "aftersales_pages.report_page": PUBLIC, "aftersales_pages.status_page": PUBLIC,
    "aftersales_pages.rate_page": PUBLIC,
    "mobile_engineers.login": PUBLIC, "mobile_engineers.refresh": PUBLIC, "mobile_engineers.logout": ANY,
    **{f"mobile_engineers.{name}": ENGINEER for name in (
        "accept", "change_status", "complete", "consume", "decline", "give_back", "job_sheet", "me", "parts", "pay",
        "ping", "reserve", "set_status", "work_done", "work_order", "work_orders")},
    # sales
    **{f"sales.{name}": SALES for name in (
        "create_lead", "create_quote", "funnel", "get_lead", "get_opportunity", "list_accounts", "list_contracts",
        "list_leads", "list_opportunities", "list_products", "send_quote")},
    **{f"sales_pages.{name}": SALES for name in (
        "funnel_page", "lead_list", "pipeline", "opportunity_page", "send_quote_page")},
    "sales.import_leads": {"sales_manager", "director", "admin"},
    "sales.web_form_lead": PUBLIC,
    **{f"mobile_approvals.{name}": APPROVERS for name in ("approval", "approvals", "approve", "delegate", "reject")},
    "sales_pages.approvals_page": APPROVERS, "sales_pages.decide_page": APPROVERS,
    "sales_pages.approval_history": APPROVERS,
}


def _calls(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = re.sub(r"<(?:int:)?(\w+)>", lambda m: "999999" if "int:" in m.group(0) else "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def test_every_endpoint_is_in_the_matrix(app):
    endpoints = {endpoint for endpoint, _, _ in _calls(app)}
    assert endpoints - set(ACCESS) == set(), "declare the new endpoints in ACCESS"
    assert set(ACCESS) - endpoints == set(), "ACCESS names endpoints that no longer exist"


@pytest.fixture
def principals(app, make_user):
    """One user per role (the engineer with an engineer profile), and anonymous: name → user id."""
    from server.aftersales.engineers import create_engineer
    from server.db import transaction
    from server.extensions import db

    users = {role: make_user(role)[0] for role in ROLES}
    with app.app_context(), transaction():
        create_engineer("Matrix Engineer", ["hvac"], 31.2, 121.4, user_id=users["engineer"])
        db.session.flush()
    return {"anonymous": None, **users}


def _headers(app, user_id):
    """A fresh token for each call: logging out revokes the one it is called with."""
    from server.auth.models import User
    from server.auth.services import issue_tokens
    from server.db import transaction
    from server.extensions import db

    if user_id is None:
        return {}
    with app.app_context(), transaction():
        token = issue_tokens(db.session.get(User, user_id), "matrix")["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_every_role_on_every_endpoint(app, principals):
    client = app.test_client()
    tokens = {who: _headers(app, user_id) for who, user_id in principals.items()}
    app.config["HIDE_INTERNAL_ERRORS"] = True  # a 5xx must show up as a status here, not as an exception
    failures = []
    try:
        for endpoint, method, url in _calls(app):
            allowed = ACCESS[endpoint]
            for who, user_id in principals.items():
                headers = _headers(app, user_id) if "logout" in endpoint else tokens[who]
                status = client.open(url, method=method, json={} if method != "GET" else None,
                                     headers=headers).status_code
                if allowed == PUBLIC:
                    ok = status < 500
                elif who == "anonymous":
                    ok = status == 401
                elif who == "admin" and allowed is ENGINEER:
                    ok = status != 401 and status < 500
                elif who in allowed:
                    ok = status not in (401, 403) and status < 500
                else:
                    ok = status == 403
                if not ok:
                    failures.append(f"{who:>16} {method:<6} {url} ({endpoint}) → {status}")
    finally:
        app.config["HIDE_INTERNAL_ERRORS"] = False
    assert failures == [], "\n".join(failures)
