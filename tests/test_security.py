"""Security checks: brute-force limits on every login and on the public QR pages, security headers on
every kind of response, hostile BPMN/DMN uploads (entities, external DTDs, deep nesting, other
encodings) and script escape attempts, tampered, expired and replayed tokens and QR links."""

from __future__ import annotations

import http.client
import io
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from server.aftersales import rating
from server.aftersales.models import ServiceRequest
from server.auth.models import ApiToken
from server.db import transaction
from server.errors import ValidationFailed
from server.extensions import db, limiter
from server.processes.models import Incident, ProcessVersion

from .aftersales_world import START, _report

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
CYCLE = (WORKFLOWS / "reference_cycle.bpmn").read_text()
SCRIPT = re.search(r"<bpmn:script>(.*?)</bpmn:script>", CYCLE, re.S).group(1)


# -- logins --------------------------------------------------------------------------------------
@pytest.fixture
def one_minute():
    """The clock held at the start of a minute: limits count per calendar minute, and ten slow (argon2)
    logins must not straddle two of them."""
    with time_machine.travel(datetime.now(UTC).replace(second=1, microsecond=0), tick=False):
        yield


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/mobile/v1/auth/token"])
def test_after_ten_failed_logins_from_an_address_even_the_right_password_waits(client, make_user, path,
                                                                               one_minute):
    make_user("engineer", username="eve")
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


def test_the_login_page_is_limited_too(app, make_user, one_minute):
    make_user("designer", username="dan")
    browser = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").get_data(as_text=True)).group(1)
    for _ in range(10):
        assert browser.post("/login", data={"username": "dan", "password": "x", "csrf_token": csrf}).status_code == 401
    page = browser.post("/login", data={"username": "dan", "password": "password-123", "csrf_token": csrf},
                        headers={"Accept": "text/html"})
    assert page.status_code == 429 and "Retry-After" in page.headers and "too many requests" in page.get_data(True)


# -- headers -------------------------------------------------------------------------------------
def _csrf(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def test_a_form_post_with_another_sessions_token_or_none_is_refused_by_name(app, make_user):
    make_user("designer", username="forger")
    mine, theirs = app.test_client(), app.test_client()
    mine.post("/login", data={"username": "forger", "password": "password-123",
                              "csrf_token": _csrf(mine.get("/login"))})
    for token in (_csrf(theirs.get("/login")), "", "x" * 40):
        refused = mine.post("/designer/processes/reference_cycle/start", data={"csrf_token": token, "data": "{}"},
                            headers={"Accept": "application/json"})
        assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
        [error] = refused.get_json()["errors"]
        assert error["field"] == "csrf_token" and "CSRF" in error["message"], error
    good = mine.post("/designer/processes/reference_cycle/start", headers={"Accept": "application/json"},
                     data={"csrf_token": _csrf(mine.get("/designer")), "data": "{}"})
    assert good.status_code == 404  # past the check: there is no such process


def test_every_kind_of_response_carries_the_security_headers(app, client, designer, world):
    browser = app.test_client()
    with time_machine.travel(START, tick=False):
        qr_page = browser.get(f"/report/{world['token']}")
    responses = {
        "api json": client.get("/api/v1/processes", headers=designer),
        "api 401": client.get("/api/v1/processes"),
        "problem json": client.get("/api/v1/nothing-here", headers=designer),
        "html page": browser.get("/login"),
        "html error": browser.get("/designer", headers={"Accept": "text/html"}),
        "public qr page": qr_page,
        "public qr error": browser.get("/report/forged"),
        "static file": browser.get("/static/css/app.css"),
        "openapi": browser.get("/api/openapi.json"),
    }
    assert qr_page.status_code == 200 and responses["api 401"].mimetype == "application/problem+json"
    for kind, response in responses.items():
        headers = response.headers
        assert headers.get("X-Content-Type-Options") == "nosniff", kind
        assert headers.get("X-Frame-Options") == "DENY", kind
        assert headers.get("Referrer-Policy") == "same-origin", kind
        policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'", kind
        assert policy["object-src"] == "'none'" and policy["form-action"] == "'self'", kind
        assert "unsafe" not in policy.get("script-src", ""), kind
        assert "Server" not in headers and "X-Powered-By" not in headers, kind  # gunicorn adds a bare "gunicorn"
        assert "Strict-Transport-Security" not in headers, kind  # plain HTTP unless FLOWDESK_SECURE_COOKIES
        if kind.startswith(("api", "problem", "openapi")):
            assert headers.get("Cache-Control") == "no-store", kind
        assert "Traceback" not in response.get_data(as_text=True), kind
        response.close()
    cookie = responses["html page"].headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_behind_tls_the_session_cookie_is_secure_and_browsers_are_told_to_keep_to_https(app):
    app.config["SESSION_COOKIE_SECURE"] = True  # what FLOWDESK_SECURE_COOKIES=1 sets
    try:
        page = app.test_client().get("/login", base_url="https://flowdesk.example")
        cookie = page.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        app.config["SESSION_COOKIE_SECURE"] = False


def test_the_production_server_names_no_version(serve):
    """gunicorn (what ``run`` serves with) answers with the same headers, and a bare Server name."""
    port = serve()
    answers = {}
    for path in ("/login", "/api/v1/nothing-here"):
        try:
            answers[path] = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).headers
        except urllib.error.HTTPError as err:
            answers[path] = err.headers
    for headers in answers.values():
        assert headers["Server"] == "gunicorn" and "X-Powered-By" not in headers
        assert headers["X-Content-Type-Options"] == "nosniff" and "frame-ancestors 'none'" in headers[
            "Content-Security-Policy"]


def _exchange(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
              headers: dict | None = None) -> tuple[int, dict, bool]:
    """One request on ``connection``: status, headers, and whether the connection stays open after it."""
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse()
    answer.read()
    return answer.status, dict(answer.getheaders()), connection.sock is not None


def test_after_a_refused_upload_the_next_request_on_a_keep_alive_connection_is_answered(serve, designer):
    # Found by a probe: a 413 announced keep-alive without reading the upload; the next request on the
    # connection failed 6 times in 10 ("Remote end closed connection without response").
    connection = http.client.HTTPConnection("127.0.0.1", serve(FLOWDESK_MAX_UPLOAD_BYTES="200000"), timeout=30)
    upload = {**designer, "Content-Type": "application/octet-stream"}
    try:
        for _ in range(10):
            status, headers, still_open = _exchange(connection, "POST", "/api/v1/processes", b"x" * 300_000, upload)
            assert status == 413 and headers["Connection"] == "close" and not still_open  # said, and done
            assert _exchange(connection, "GET", "/api/v1/me", headers=designer)[0] == 200  # reconnected
            # A body within the limit that the server had no use for (no credentials: 401) is read to its
            # end, so the connection really does stay usable as announced.
            status, headers, still_open = _exchange(connection, "POST", "/api/v1/processes", b"x" * 150_000,
                                                    {"Content-Type": "application/octet-stream"})
            assert status == 401 and headers["Connection"] == "keep-alive" and still_open
            assert _exchange(connection, "GET", "/api/v1/me", headers=designer)[0] == 200
    finally:
        connection.close()


def test_token_answers_are_never_cached(client, make_user):
    make_user("engineer", username="cache")
    answer = client.post("/api/mobile/v1/auth/token", json={"username": "cache", "password": "password-123"})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"


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


UTF16 = ("""<?xml version="1.0" encoding="UTF-16"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
<bpmn:process id="wide" isExecutable="true"><bpmn:startEvent id="s"/></bpmn:process></bpmn:definitions>""")


@pytest.mark.parametrize("name, xml", [("laughs.bpmn", LAUGHS), ("dtd.bpmn", EXTERNAL_DTD), ("deep.bpmn", DEEP)])
def test_hostile_xml_is_refused_with_its_file_and_nothing_is_deployed(app, deploy, name, xml):
    body = deploy(files={name: xml}, expect=422)
    assert body["file"] == name and body["title"] == "Invalid BPMN" and body["line"] >= 1
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_an_uploaded_file_in_utf16_is_accepted_as_its_declaration_says(app, make_user, encoding):
    make_user("designer", username="uploader")
    browser = app.test_client()
    browser.post("/login", data={"username": "uploader", "password": "password-123",
                                 "csrf_token": _csrf(browser.get("/login"))})
    answer = browser.post("/designer", content_type="multipart/form-data", data={
        "csrf_token": _csrf(browser.get("/designer")), "action": "deploy",
        "files": (io.BytesIO(UTF16.encode(encoding)), "wide.bpmn")})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    with app.app_context():
        stored = db.session.query(ProcessVersion).one()
        assert stored.process_key == "wide" and 'encoding="UTF-8"' in stored.files["wide.bpmn"]


def test_a_latin1_file_is_read_in_the_encoding_it_declares(deploy):
    text = UTF16.replace("UTF-16", "ISO-8859-1").replace('id="s"/>', 'id="s" name="Café"/>')
    [result] = deploy(files={"latin.bpmn": text}, encoding="latin-1")
    assert result["process_key"] == "wide"


def test_a_file_that_is_not_in_its_declared_encoding_is_refused_with_the_line(deploy):
    text = UTF16.replace("UTF-16", "UTF-8").replace('id="s"/>', 'id="s" name="Caf\xe9"/>')
    body = deploy(files={"bad.bpmn": text}, encoding="latin-1", expect=422)
    assert body["file"] == "bad.bpmn" and body["line"] == 3 and "UTF-8" in body["detail"]


# Each refused at deploy, on its element and line (its first line: the one that escapes), before anything runs.
ESCAPES = [
    "import os", "from os import system", "x = __import__('os')", "x = ().__class__.__mro__[1].__subclasses__()",
    "x = [].__class__", "global y\ny = 1", "x = items._private", "x = open('/etc/passwd').read()",
    "x = eval('1+1')", "exec('y = 1')", "x = getattr(items, 'append')", "x = compile('1', 'f', 'eval')",
    "x = globals()", "x = vars()", "x = int.mro()",
    # a generator's frame leads to the caller's frames and their modules, without one underscore
    "g = (g.gi_frame.f_back.f_back.f_globals for _ in [1])\nx = next(g)",
    # format fields walk attributes where the AST cannot see them: "{0.__globals__}"
    "x = '{0.__class__.__mro__}'.format(items)", "x = str.format('{0.__class__}', items)",
    "x = '{0.__class__}'.format_map({'0': items})",
]


@pytest.mark.parametrize("script", ESCAPES)
def test_script_escapes_are_refused_at_deploy_on_their_element_and_line(app, deploy, script):
    body = deploy(files={"cycle.bpmn": CYCLE.replace(SCRIPT, "total = 0\n" + script)}, expect=422)
    script_line = next(n for n, line in enumerate(CYCLE.splitlines(), 1) if "<bpmn:script>" in line)
    assert body["element_id"] == "compute_total" and body["line"] == script_line + 1, body  # the escape's line
    assert body["title"] == "Invalid BPMN" and "not allowed" in body["detail"]
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


# What could swallow the time limit's exception (or hook into the interpreter) is refused on its own line.
SWALLOWS = [
    ("x = 1\ntry:\n    x = 2\nexcept:\n    x = 3", 4),
    ("x = 1\nfor i in items:\n    try:\n        x = 2\n    finally:\n        continue", 6),
    ("x = 1\nclass Quiet:\n    def __exit__(self, *args):\n        return True", 3),
]


@pytest.mark.parametrize("script, line", SWALLOWS)
def test_scripts_that_could_swallow_their_time_limit_are_refused_at_deploy(app, deploy, script, line):
    body = deploy(files={"cycle.bpmn": CYCLE.replace(SCRIPT, script)}, expect=422)
    script_line = next(n for n, text in enumerate(CYCLE.splitlines(), 1) if "<bpmn:script>" in text)
    assert body["element_id"] == "compute_total" and body["line"] == script_line + line - 1, body
    assert "not allowed" in body["detail"]
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


@pytest.mark.parametrize("script, error", [
    ("x = type(items)", "is not defined"),  # a common data field name: not refused by name, just not there
    ("x = json.codecs.sys.modules", "has no attribute 'codecs'"),  # helpers are plain functions, not modules
    ("x = math.sys", "has no attribute 'sys'"),
])
def test_what_scripts_may_name_leads_nowhere_at_run_time(app, deploy, start, script, error):
    deploy(files={"cycle.bpmn": CYCLE.replace(SCRIPT, script)})
    detail = start("reference_cycle")
    assert detail["instance"]["status"] == "error"
    with app.app_context():
        incident = db.session.query(Incident).one()
        assert incident.element_id == "compute_total" and error in incident.message


def test_a_dmn_cell_that_escapes_is_refused_at_deploy_on_its_rule(app, deploy):
    table = (WORKFLOWS / "lead_routing.dmn").read_text()
    hostile = table.replace('<inputEntry id="lead_routing_r0_i1"><text>"healthcare"</text>',
                            '<inputEntry id="lead_routing_r0_i1"><text>== ().__class__</text>', 1)
    assert hostile != table
    body = deploy(files={"lead_routing.dmn": hostile}, expect=422)
    assert body["element_id"] == "lead_routing_r0_i1" and body["file"] == "lead_routing.dmn" and body["line"]
    with app.app_context():
        assert db.session.query(ProcessVersion).count() == 0


# -- deeply nested JSON --------------------------------------------------------------------------
DEEP_ARRAYS = "[" * 5_000 + "]" * 5_000
DEEP_OBJECTS = '{"a": ' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize("deep", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["5000 arrays", "100000 objects"])
@pytest.mark.parametrize("path, role", [
    ("/api/v1/processes/reference_cycle/instances", "designer"),
    ("/api/v1/auth/token", None),
    ("/api/v1/public/leads", None),
    ("/api/mobile/v1/auth/token", None),
    ("/api/mobile/v1/me/status", "engineer"),
])
def test_json_nested_past_the_limit_is_refused_before_anything_parses_it(client, make_user, path, role, deep):
    # Found by a probe: every JSON endpoint answered 500 (RecursionError in the parser).
    headers = make_user(role)[1] if role else {}
    answer = client.post(path, data=f'{{"data": {deep}}}', content_type="application/json", headers=headers)
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json", answer.get_data(True)[:300]
    assert "nests" in answer.get_json()["detail"] and "at most 64" in answer.get_json()["detail"]


def test_json_nested_within_the_limit_is_taken_as_usual(deploy, start):
    deploy("reference_cycle.bpmn")
    nested = 1
    for _ in range(60):
        nested = {"n": [nested]} if isinstance(nested, int) else {"n": nested}
    detail = start("reference_cycle", {"nested": nested})
    assert detail["instance"]["status"] == "running"


def test_json_typed_into_a_page_form_is_bounded_too(app, deploy, make_user):
    deploy("reference_cycle.bpmn")
    make_user("designer", username="typist")
    browser = app.test_client()
    browser.post("/login", data={"username": "typist", "password": "password-123",
                                 "csrf_token": _csrf(browser.get("/login"))})
    page = browser.post("/designer/processes/reference_cycle/start", headers={"Accept": "text/html"},
                        data={"csrf_token": _csrf(browser.get("/designer")), "data": DEEP_ARRAYS})
    assert page.status_code == 422 and "nests 5000 levels deep" in page.get_data(as_text=True)
    with app.test_request_context():
        from server.web.forms import data_from_form

        schema = {"properties": {"lines": {"type": "array"}}}
        with pytest.raises(ValidationFailed) as refused:
            data_from_form(schema, {"lines": DEEP_OBJECTS})
        assert refused.value.extra["errors"][0]["field"] == "lines"
        assert data_from_form(schema, {"lines": "[[1], [2]]"}) == {"lines": [[1], [2]]}


# -- tokens --------------------------------------------------------------------------------------
def test_tampered_expired_and_revoked_access_tokens_are_refused(app, client, make_user):
    make_user("designer", username="tom")
    pair = client.post("/api/v1/auth/token", json={"username": "tom", "password": "password-123"}).get_json()
    token = pair["access_token"]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    later = datetime.now(UTC) + timedelta(hours=app.config["API_TOKEN_HOURS"], minutes=1)
    with time_machine.travel(later):  # the token was used (and cached) a moment ago: expiry still wins
        expired = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert expired.status_code == 401 and expired.mimetype == "application/problem+json"
    fresh = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).get_json()
    replayed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replayed.status_code == 401
    forged = fresh["refresh_token"][:-1] + ("x" if not fresh["refresh_token"].endswith("x") else "y")
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": forged}).status_code == 401


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("base", ["/api/v1", "/api/mobile/v1"])
def test_a_replayed_refresh_token_ends_its_login_and_no_other(app, client, make_user, base):
    make_user("engineer", username="rita")  # (the mobile /me needs an engineer profile: /api/v1/me checks)
    login = {"username": "rita", "password": "password-123"}
    phone = client.post(f"{base}/auth/token", json=login).get_json()
    laptop = client.post(f"{base}/auth/token", json=login).get_json()
    rotated = client.post(f"{base}/auth/refresh", json={"refresh_token": phone["refresh_token"]}).get_json()
    assert client.get("/api/v1/me", headers=_bearer(rotated["access_token"])).status_code == 200

    # The spent refresh token turns up again: someone else holds it. Both holders must sign in again.
    stolen = client.post(f"{base}/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert stolen.status_code == 401 and stolen.mimetype == "application/problem+json"
    assert "sign in again" in stolen.get_json()["detail"]
    assert client.get("/api/v1/me", headers=_bearer(rotated["access_token"])).status_code == 401
    assert client.post(f"{base}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}).status_code == 401
    # The same user's other login is untouched.
    assert client.get("/api/v1/me", headers=_bearer(laptop["access_token"])).status_code == 200
    with app.app_context():
        revoked = db.session.scalars(select(ApiToken.revoked_at)).all()
        assert len(revoked) == 8  # pairs: make_user's, the phone's two, the laptop's
        assert sum(1 for at in revoked if at is not None) == 4  # the phone's two pairs, nothing else


def test_logging_out_ends_the_login_refresh_token_included(client, make_user):
    make_user("engineer", username="lou")
    pair = client.post("/api/v1/auth/token", json={"username": "lou", "password": "password-123"}).get_json()
    assert client.post("/api/v1/auth/logout", headers=_bearer(pair["access_token"])).status_code == 204
    assert client.get("/api/v1/me", headers=_bearer(pair["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


def test_concurrent_presentations_of_one_refresh_token_yield_one_pair(app, make_user):
    import threading

    make_user("engineer", username="twin")
    client = app.test_client()
    pair = client.post("/api/v1/auth/token", json={"username": "twin", "password": "password-123"}).get_json()
    barrier, answers = threading.Barrier(4), []

    def present():
        mine = app.test_client()
        barrier.wait()
        answers.append(mine.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code)

    threads = [threading.Thread(target=present) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 401, 401, 401]


# -- QR links ------------------------------------------------------------------------------------
@pytest.fixture
def rating_link(app, client, world):
    """A closed job's rating token, signed at START (the job is closed as the process would close it)."""
    with time_machine.travel(START, tick=False):
        request_id = _report(client, world["token"])
        with app.app_context(), transaction():
            rating.close_job(request_id)
            token = rating.rating_token(db.session.get(ServiceRequest, request_id))
    return token


def test_rating_links_tampered_expired_or_used_for_another_purpose_are_refused(client, world, rating_link):
    with time_machine.travel(START + timedelta(minutes=5), tick=False):
        assert client.get(f"/rate/{rating_link}").status_code == 200
        payload, _, signature = rating_link.rpartition(".")
        tampered = f"{payload}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}"
        assert client.get(f"/rate/{tampered}").status_code == 403
        # The signature is salted with the link's purpose: a rating link opens no other page, nor they it.
        assert client.get(f"/report/{rating_link}").status_code == 403
        assert client.get(f"/status/{rating_link}").status_code == 403
        assert client.get(f"/rate/{world['token']}").status_code == 403
    with time_machine.travel(START + timedelta(days=31), tick=False):
        expired = client.get(f"/rate/{rating_link}")
        assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)


@pytest.mark.parametrize("page", ["report", "rate"])
def test_the_eleventh_post_in_a_minute_on_a_public_qr_page_waits(client, world, rating_link, page):
    token = world["token"] if page == "report" else rating_link
    # Cheap posts that still count: the report page's honeypot, a rating without stars.
    form = {"description": "spam", "website": "http://bot.example"} if page == "report" else {"stars": "0"}
    limiter.reset()  # the fixtures' own report counted: start this minute afresh
    with time_machine.travel(START + timedelta(minutes=5), tick=False):
        answers = [client.post(f"/{page}/{token}", data=form) for _ in range(11)]
    assert [a.status_code for a in answers[:10]] == [200 if page == "report" else 422] * 10
    assert answers[10].status_code == 429 and 0 < int(answers[10].headers["Retry-After"]) <= 60
    assert "too many requests" in answers[10].get_data(as_text=True)
    elsewhere = client.post(f"/{page}/{token}", data=form, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert elsewhere.status_code != 429  # the budget is per address


def test_ids_and_numbers_past_the_database_columns_are_client_errors(client, designer, deploy):
    assert client.get("/api/v1/instances/17042477558416313467962340147200", headers=designer).status_code == 404
    deploy("reference_cycle.bpmn")
    started = client.post("/api/v1/processes/reference_cycle/instances", json={"data": {}, "version": 2**70},
                          headers=designer)
    assert started.status_code == 422 and started.mimetype == "application/problem+json"
    odd = client.post("/api/v1/processes/%ED%A0%80bad/instances", json={"data": {}}, headers=designer)
    assert odd.status_code in (404, 422) and odd.mimetype == "application/problem+json"
