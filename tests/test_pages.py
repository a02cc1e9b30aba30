"""Pages without a browser: language choice (browser, session, profile), the designer's upload with
the error on its element, a task form drawn from its JSON schema (field errors in the API's words),
and CSRF on signed-in forms."""

from __future__ import annotations

import re
from pathlib import Path

from server.auth.models import User
from server.extensions import db

BPMN = Path(__file__).parent / "bpmn"
WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def _sign_in(client, username: str) -> str:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"username": username, "password": "password-123",
                                       "csrf_token": csrf}).status_code == 302
    return csrf


def test_language_from_the_browser_then_the_users_choice_kept_in_the_profile(app, make_user):
    user_id, _ = make_user("designer", username="lin")
    client = app.test_client()
    page = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert 'lang="zh-Hans"' in page and "登录 Flowdesk" in page
    assert "Sign in to Flowdesk" in app.test_client().get("/login").get_data(as_text=True)
    csrf = _sign_in(client, "lin")
    chosen = client.post("/language", data={"lang": "zh", "next": "/designer", "csrf_token": csrf})
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/designer"
    assert "上传模型" in client.get("/designer", headers={"Accept-Language": "en"}).get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user_id).locale == "zh"
    assert client.post("/language", data={"lang": "en"}).status_code == 422  # no CSRF token


def test_an_invalid_upload_is_shown_on_its_element_and_changes_nothing(app, make_user):
    make_user("designer", username="dora")
    client = app.test_client()
    csrf = _sign_in(client, "dora")
    bad = (WORKFLOWS / "reference_cycle.bpmn").read_text().replace('value="reference_review"', 'value="no_such_form"')
    answer = client.post("/designer", data={"action": "deploy", "csrf_token": csrf,
                                            "files": [(__import__("io").BytesIO(bad.encode()), "cycle.bpmn")]},
                         content_type="multipart/form-data")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "review_total" in page and "no_such_form" in page
    assert '"element": "review_total"' in page  # handed to the diagram to mark the element
    assert "Nothing deployed yet." in page


def test_a_task_form_from_its_schema_names_the_failing_field_then_completes(app, deploy, start, make_user):
    deploy("reference_cycle.bpmn")
    instance = start("reference_cycle")["instance"]["id"]
    make_user("designer", username="dora")
    client = app.test_client()
    csrf = _sign_in(client, "dora")
    inbox = client.get("/tasks").get_data(as_text=True)
    task_id = int(re.search(r'href="/tasks/(\d+)"', inbox).group(1))
    form = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert 'name="approved" value="true"' in form and 'name="comment"' in form  # boolean → yes/no, text
    missing = client.post(f"/tasks/{task_id}", data={"csrf_token": csrf, "action": "complete"})
    assert missing.status_code == 422 and "is required" in missing.get_data(as_text=True)
    assert client.post(f"/tasks/{task_id}", data={"action": "complete"}).status_code == 422  # no CSRF
    fields = re.findall(r'name="(\w+)"', form)
    data = {"csrf_token": csrf, "action": "complete", "approved": "true", "comment": "fine"}
    done = client.post(f"/tasks/{task_id}", data={k: v for k, v in data.items() if k in fields + ["action"]})
    assert done.status_code == 302, done.get_data(as_text=True)
    detail = client.get(f"/designer/instances/{instance}").get_data(as_text=True)
    assert "completed" in detail
