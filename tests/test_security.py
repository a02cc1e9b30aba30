"""Security checks: brute-force limits on every login, security headers on every kind of response,
hostile BPMN uploads (entities, external DTDs, deep nesting) and script escape attempts, tampered and
replayed tokens."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from server.extensions import db
from server.processes.models import Incident, ProcessVersion

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
CYCLE = (WORKFLOWS / "reference_cycle.bpmn").read_text()
SCRIPT = re.search(r"<bpmn:script>(.*?)</bpmn:script>", CYCLE, re.S).group(1)


# -- logins --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/mobile/v1/auth/token"])
def test_after_ten_failed_logins_from_an_address_even_the_right_password_waits(client, make_user, path):
    make_user("engineer", username="eve")
    with time_machine.travel(datetime(2026, 5, 1, 9, 0, 10, tzinfo=UTC), tick=False):  # one rate window
        for _ in range(10):
            assert client.post(path, json={"username": "eve", "password": "guess"}).status_code == 401
        blocked = client.post(path, json={"username": "eve", "password": "password-123"})
        assert blocked.status_code == 429 and blocked.mimetype == "application/problem+json"
        assert 0 < int(blocked.headers["Retry-After"]) <= 60
        elsewhere = client.post(path, json={"username": "eve", "password": "password-123"},
                                environ_base={"REMOTE_ADDR": "10.9.9.9"})
        assert elsewhere.status_code == 429  # the username's own budget is spent too, whatever the address


def test_successful_logins_do_not_spend_the_budget(client, make_user):
    make_user("engineer", username="sam")
    for _ in range(15):
        answer = client.post("/api/v1/auth/token", json={"username": "sam", "password": "password-123"})
        assert answer.status_code == 200


def test_the_login_page_is_limited_too(app, make_user):
    make_user("designer", username="dan")
    browser = app.test_client()
    with time_machine.travel(datetime(2026, 5, 1, 9, 0, 10, tzinfo=UTC), tick=False):  # one rate window
        page = browser.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        for _ in range(10):
            answer = browser.post("/login", data={"username": "dan", "password": "x", "csrf_token": csrf})
            assert answer.status_code == 401
        page = browser.post("/login", data={"username": "dan", "password": "password-123", "csrf_token": csrf},
                            headers={"Accept": "text/html"})
    assert page.status_code == 429 and "Retry-After" in page.headers and "too many requests" in page.get_data(True)


# -- headers -------------------------------------------------------------------------------------
def test_every_kind_of_response_carries_the_security_headers(app, client, designer):
    browser = app.test_client()
    responses = {
        "api json": client.get("/api/v1/processes", headers=designer),
        "problem json": client.get("/api/v1/nothing-here", headers=designer),
        "html page": browser.get("/login"),
        "html error": browser.get("/designer", headers={"Accept": "text/html"}),
        "public qr page": browser.get("/report/forged"),
        "static file": browser.get("/static/css/app.css"),
        "openapi": browser.get("/api/openapi.json"),
    }
    for kind, response in responses.items():
        headers = response.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", kind
        assert headers.get("X-Frame-Options") == "DENY", kind
        assert headers.get("Referrer-Policy") == "same-origin", kind
        assert "default-src 'self'" in headers.get("Content-Security-Policy", ""), kind
        assert "script-src" not in headers["Content-Security-Policy"] or "unsafe" not in headers[
            "Content-Security-Policy"].split("script-src", 1)[1].split(";")[0], kind
        assert "Traceback" not in response.get_data(as_text=True), kind
        response.close()
    cookie = responses["html page"].headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# -- hostile uploads -----------------------------------------------------------------------------
LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
<bpmn:process id="laughs" name="&lol3;" isExecutable="true"><bpmn:startEvent id="s"/></bpmn:process>
</bpmn:definitions>"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE definitions SYSTEM "http://127.0.0.1:1/evil.dtd">
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
<bpmn:process id="dtd" isExecutable="true"><bpmn:startEvent id="s"/></bpmn:process></bpmn:definitions>"""
DEEP = ("""<?xml version="1.0"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" """
        """id="d" targetNamespace="x"><bpmn:process id="deep" isExecutable="true"><bpmn:documentation>"""
        + "<a>" * 5000 + "</a>" * 5000 + "</bpmn:documentation></bpmn:process></bpmn:definitions>")


@pytest.mark.parametrize("name, xml", [("laughs.bpmn", LAUGHS), ("dtd.bpmn", EXTERNAL_DTD), ("deep.bpmn", DEEP)])
def test_hostile_xml_is_refused_with_its_file_and_nothing_is_deployed(app, deploy, name, xml):
    body = deploy(files={name: xml}, expect=422)
    assert body["file"] == name and body["title"] == "Invalid BPMN"
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


@pytest.mark.parametrize("script", [
    "import os", "from os import system", "x = __import__('os')", "x = ().__class__.__mro__[1].__subclasses__()",
    "x = [].__class__", "global y\ny = 1", "x = items._private",
])
def test_script_escapes_are_refused_at_deploy_on_their_element(app, deploy, script):
    body = deploy(files={"cycle.bpmn": CYCLE.replace(SCRIPT, script)}, expect=422)
    assert body["element_id"] == "compute_total"
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


@pytest.mark.parametrize("script", [
    "x = open('/etc/passwd').read()", "x = eval('1+1')", "exec('y = 1')", "x = getattr(items, 'append')",
    "x = compile('1', 'f', 'eval')", "x = globals()", "x = vars()", "x = type(items)",
])
def test_forbidden_builtins_do_not_exist_inside_scripts(app, deploy, start, script):
    deploy(files={"cycle.bpmn": CYCLE.replace(SCRIPT, script)})
    detail = start("reference_cycle")
    assert detail["instance"]["status"] == "error"
    with app.app_context():
        incident = db.session.query(Incident).one()
        assert incident.element_id == "compute_total" and "is not defined" in incident.message


# -- tokens --------------------------------------------------------------------------------------
def test_tampered_expired_and_revoked_access_tokens_are_refused(app, client, make_user):
    from datetime import UTC, datetime, timedelta

    import time_machine

    make_user("designer", username="tom")
    pair = client.post("/api/v1/auth/token", json={"username": "tom", "password": "password-123"}).get_json()
    token = pair["access_token"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    later = datetime.now(UTC) + timedelta(hours=app.config["API_TOKEN_HOURS"], minutes=1)
    with time_machine.travel(later):
        app.extensions.pop("flowdesk_token_cache", None)
        expired = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert expired.status_code == 401 and expired.mimetype == "application/problem+json"
    fresh = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).get_json()
    replayed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replayed.status_code == 401
    forged = fresh["refresh_token"][:-1] + ("x" if not fresh["refresh_token"].endswith("x") else "y")
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": forged}).status_code == 401


def test_ids_and_numbers_past_the_database_columns_are_client_errors(client, designer, deploy):
    assert client.get("/api/v1/instances/17042477558416313467962340147200", headers=designer).status_code == 404
    deploy("reference_cycle.bpmn")
    started = client.post("/api/v1/processes/reference_cycle/instances", json={"data": {}, "version": 2**70},
                          headers=designer)
    assert started.status_code == 422 and started.mimetype == "application/problem+json"
    odd = client.post("/api/v1/processes/%ED%A0%80bad/instances", json={"data": {}}, headers=designer)
    assert odd.status_code in (404, 422) and odd.mimetype == "application/problem+json"
