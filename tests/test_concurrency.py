"""Races: two completions of one task, two claims of one task."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import time_machine
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


def test_a_task_completed_while_its_due_timer_fires_gives_one_winner_and_no_error(deploy, start, client, make_user,
                                                                                  app):
    # Found by bench/fault_injection.py on PostgreSQL: the timer job claimed its timer row, then waited for
    # the instance row; the completion held the instance row and wanted to cancel that timer row: deadlock,
    # a 500 for the user and a failed job. Every writer now locks the instance row first.
    from server.processes.jobs import fire_timer_job
    from server.processes.models import Timer

    deploy("approval_escalation.bpmn")
    with time_machine.travel(datetime.now(UTC) - timedelta(hours=2), tick=False):
        for _ in range(20):
            start("approval_escalation")
    _, manager = make_user("sales_manager")
    tasks = client.get("/api/v1/tasks", headers=manager).get_json()
    with app.app_context():
        timers = dict(db.session.execute(select(Timer.instance_id, Timer.id)).all())
    outcomes, codes = [], []

    def fire(timer_id):
        with app.app_context():
            outcomes.append(fire_timer_job(timer_id))

    def complete(task):
        body = {"data": {"approved": True}, "version": task["instance_version"]}
        codes.append(app.test_client().post(f"/api/v1/tasks/{task['id']}/complete", json=body,
                                            headers=manager).status_code)

    for task in tasks:
        threads = [threading.Thread(target=fire, args=(timers[task["instance_id"]],)),
                   threading.Thread(target=complete, args=(task,))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(codes) == len(outcomes) == 20 and set(codes) <= {200, 409}
    assert set(outcomes) <= {"fired", "skipped", "conflict"}
    with app.app_context():
        rows = db.session.scalars(select(Timer)).all()
        assert all((t.fired_at is None) != (t.cancelled_at is None) for t in rows)
        assert sum(t.fired_at is not None for t in rows) == codes.count(409)
