"""Races: two completions of one task, two claims of one task."""

from __future__ import annotations

import threading

from sqlalchemy import select

from server.extensions import db
from server.processes.models import AuditEvent


def _race(app, requests):
    """Fire the requests at the same moment from separate threads; return status codes."""
    barrier = threading.Barrier(len(requests))
    results = [None] * len(requests)

    def run(index, method, url, body, headers):
        client = app.test_client()
        barrier.wait()
        results[index] = client.open(url, method=method, json=body, headers=headers).status_code

    threads = [threading.Thread(target=run, args=(i, *req)) for i, req in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_concurrent_completions_of_one_task_one_wins_the_other_gets_409(deploy, start, client, designer, app):
    deploy("reference_cycle.bpmn")
    for _ in range(5):  # several rounds: the interleaving differs each time
        start("reference_cycle")
    tasks = client.get("/api/v1/tasks", headers=designer).get_json()
    for task in tasks:
        body = {"data": {"approved": True}, "version": task["instance_version"]}
        url = f"/api/v1/tasks/{task['id']}/complete"
        codes = _race(app, [("POST", url, body, designer), ("POST", url, body, designer)])
        assert sorted(codes) == [200, 409]
    with app.app_context():
        completions = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "task_completed")).all()
        assert len(completions) == 5
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "completed")).all().__len__() == 5


def test_two_concurrent_claims_one_wins(deploy, start, client, make_user, app):
    deploy("approval_escalation.bpmn")
    start("approval_escalation")
    _, first = make_user("sales_manager")
    _, second = make_user("sales_manager")
    [task] = client.get("/api/v1/tasks", headers=first).get_json()
    url = f"/api/v1/tasks/{task['id']}/claim"
    codes = _race(app, [("POST", url, None, first), ("POST", url, None, second)])
    assert sorted(codes) == [200, 409]
