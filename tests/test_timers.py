"""Timers: database rows delivered by RQ, fired exactly once, cancelled with their task."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from sqlalchemy import func, select

from server.extensions import db
from server.jobs.redis_server import EmbeddedRedis
from server.processes.models import AuditEvent, HumanTask, ProcessInstance, Timer
from tests.conftest import TEST_BPMN

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _open_tasks(app):
    with app.app_context():
        rows = db.session.scalars(select(HumanTask).where(HumanTask.status == "open")).all()
        return [(t.element_id, t.candidate_role) for t in rows]


def _fired_counts(app):
    with app.app_context():
        rows = db.session.execute(select(AuditEvent.data).where(AuditEvent.event == "timer_fired")).scalars().all()
        counts: dict[int, int] = {}
        for data in rows:
            counts[data["timer_id"]] = counts.get(data["timer_id"], 0) + 1
        return counts


def test_a_boundary_timer_not_acted_on_in_time_runs_the_escalation_path(deploy, start, poll_timers, run_worker, app):
    deploy("approval_escalation.bpmn")
    with time_machine.travel(START, tick=False) as clock:
        detail = start("approval_escalation")
        assert _open_tasks(app) == [("review_request", "sales_manager")]
        [timer] = detail["timers"]
        assert timer["due_at"].startswith("2026-03-02T10:00:00")
        assert detail["tasks"][0]["due_at"].startswith("2026-03-02T10:00:00")

        clock.move_to(START + timedelta(minutes=59))
        assert poll_timers() == 0

        clock.move_to(START + timedelta(minutes=61))
        assert poll_timers() == 1
        run_worker()
    assert _open_tasks(app) == [("escalated_review", "director")]
    assert list(_fired_counts(app).values()) == [1]


def test_a_task_completed_in_time_cancels_its_timer_which_never_fires(deploy, start, client, make_user,
                                                                        poll_timers, run_worker, app):
    deploy("approval_escalation.bpmn")
    _, manager = make_user("sales_manager")
    with time_machine.travel(START, tick=False) as clock:
        start("approval_escalation")
        [task] = client.get("/api/v1/tasks", headers=manager).get_json()
        clock.move_to(START + timedelta(minutes=30))
        done = client.post(f"/api/v1/tasks/{task['id']}/complete",
                           json={"data": {"approved": True}, "version": task["instance_version"]}, headers=manager)
        assert done.get_json()["instance"]["status"] == "completed"
        clock.move_to(START + timedelta(hours=5))
        assert poll_timers() == 0
        run_worker()
    with app.app_context():
        timer = db.session.scalars(select(Timer)).one()
        assert timer.cancelled_at is not None and timer.fired_at is None
    assert _fired_counts(app) == {}


def test_a_timer_delivered_twice_fires_once(deploy, start, app, run_worker):
    from server.jobs.queues import TIMERS, get_queue
    from server.processes.jobs import fire_timer_job

    deploy("delay.bpmn")
    with time_machine.travel(START, tick=False) as clock:
        detail = start("delay")
        timer_id = detail["timers"][0]["id"]
        clock.move_to(START + timedelta(minutes=11))
        with app.app_context():
            for _ in range(3):
                get_queue(TIMERS).enqueue(fire_timer_job, timer_id)
        run_worker()
    assert _fired_counts(app) == {timer_id: 1}
    with app.app_context():
        assert db.session.get(ProcessInstance, detail["instance"]["id"]).status == "completed"


def test_the_poller_hands_due_timers_over_in_batches_fired_one_by_one(deploy, start, app, poll_timers,
                                                                     run_worker):
    from server.jobs.queues import TIMERS, get_queue

    deploy("delay.bpmn")
    batch = app.config["TIMER_BATCH"]
    app.config["TIMER_BATCH"] = 4
    try:
        with time_machine.travel(START, tick=False) as clock:
            ids = [start("delay")["timers"][0]["id"] for _ in range(10)]
            clock.move_to(START + timedelta(minutes=11))
            assert poll_timers() == 10
            with app.app_context():
                jobs = get_queue(TIMERS).get_jobs()
                assert [len(job.args[0]) for job in jobs] == [4, 4, 2]  # oldest first, in batches
            run_worker()
    finally:
        app.config["TIMER_BATCH"] = batch
    assert _fired_counts(app) == dict.fromkeys(ids, 1)


def test_a_timer_waiting_in_a_long_queue_is_not_handed_over_again_until_its_job_starts(
        deploy, start, app, poll_timers, run_worker, redis_conn):
    """Regression (bench/timers.py on a busy machine): the hand-over claim used to expire after one
    redeliver period even while the job still waited in the queue, so a backlog longer than that was
    handed over again and again (28 % more deliveries), adding work for workers already behind."""
    from server.processes.jobs import arm_redelivery, handed_key

    deploy("delay.bpmn")
    redeliver = app.config["TIMER_REDELIVER_SECONDS"]
    with time_machine.travel(START, tick=False) as clock:
        ids = [start("delay")["timers"][0]["id"] for _ in range(3)]
        clock.move_to(START + timedelta(minutes=11))
        assert poll_timers() == 3
        # Queued: claimed for many redeliver periods, so a slow queue is not handed over twice.
        assert all(redis_conn.ttl(handed_key(timer_id)) > 2 * redeliver for timer_id in ids)
        assert poll_timers() == 0
        # Started: a job re-arms its timers' claims to one redeliver period (a killed worker's timers return).
        with app.app_context():
            arm_redelivery(ids[:1])
        assert 0 < redis_conn.ttl(handed_key(ids[0])) <= redeliver
        run_worker()
    assert _fired_counts(app) == dict.fromkeys(ids, 1)
    assert not any(redis_conn.exists(handed_key(timer_id)) for timer_id in ids)  # each job drops its claims


def _redis_sets(redis_conn) -> int:
    return redis_conn.info("commandstats").get("cmdstat_set", {}).get("calls", 0)


def test_a_poller_does_not_claim_again_what_it_handed_over_recently(deploy, start, app, run_worker, redis_conn):
    """Regression (bench/timers.py): with a backlog queued, every round claimed every waiting timer
    again in Redis (the poller's CPU per fire grew with the backlog, beside workers already behind)."""
    from server.jobs.poller import enqueue_due_timers
    from server.processes.jobs import handed_key

    deploy("delay.bpmn")
    handed: dict[int, float] = {}
    with time_machine.travel(START, tick=False) as clock:
        ids = [start("delay")["timers"][0]["id"] for _ in range(5)]
        clock.move_to(START + timedelta(minutes=11))
        with app.app_context():
            assert enqueue_due_timers(handed=handed) == 5
            sets = _redis_sets(redis_conn)
            assert enqueue_due_timers(handed=handed) == 0
            assert _redis_sets(redis_conn) == sets  # remembered: no Redis command per waiting timer
            handed[ids[0]] -= 2 * app.config["TIMER_REDELIVER_SECONDS"]  # one redeliver period later
            assert enqueue_due_timers(handed=handed) == 0  # claimed again in Redis, still queued: not re-sent
            assert _redis_sets(redis_conn) == sets + 1 and redis_conn.exists(handed_key(ids[0]))
            db.session.remove()
        run_worker()
    assert _fired_counts(app) == dict.fromkeys(ids, 1)


def test_a_timer_its_job_gave_back_is_handed_over_again_at_once(deploy, start, app, client, designer,
                                                                run_worker):
    from server.jobs.poller import enqueue_due_timers

    deploy("delay.bpmn")
    handed: dict[int, float] = {}
    with time_machine.travel(START, tick=False) as clock:
        detail = start("delay")
        iid = detail["instance"]["id"]
        clock.move_to(START + timedelta(minutes=11))
        with app.app_context():
            assert enqueue_due_timers(handed=handed) == 1
            db.session.remove()
        client.post(f"/api/v1/instances/{iid}/suspend", json={}, headers=designer)
        run_worker()  # the job finds the instance suspended and gives the timer back unfired
        client.post(f"/api/v1/instances/{iid}/resume", json={}, headers=designer)
        with app.app_context():
            assert enqueue_due_timers(handed=handed) == 1  # not held back by the poller's memory
            db.session.remove()
        run_worker()
    assert _fired_counts(app) == {detail["timers"][0]["id"]: 1}


def test_an_early_delivery_changes_nothing(deploy, start, app):
    from server.processes.jobs import fire_timer_job

    deploy("delay.bpmn")
    with time_machine.travel(START, tick=False):
        detail = start("delay")
        with app.app_context():
            assert fire_timer_job(detail["timers"][0]["id"]) == "skipped"
    assert _fired_counts(app) == {}


def _worker_env(app) -> dict:
    env = dict(os.environ)
    env["DATABASE_URL"] = app.config["SQLALCHEMY_DATABASE_URI"]
    env["REDIS_URL"] = app.config["REDIS_URL"]
    env["FLOWDESK_DATA_DIR"] = app.config["DATA_DIR"]
    env["SECRET_KEY"] = app.config["SECRET_KEY"]
    return env


def _count_fired(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Timer).where(Timer.fired_at.is_not(None)))
        db.session.remove()
        return count


def test_timers_survive_a_killed_worker_and_a_flushed_redis_and_fire_exactly_once(
        deploy, start, app, poll_timers, run_worker, redis_conn):
    deploy("delay.bpmn")
    # Start 200 instances in the past, so their timers are due by the real clock a separate worker uses.
    with time_machine.travel(datetime.now(UTC) - timedelta(hours=1), tick=False):
        for _ in range(200):
            start("delay")
    assert poll_timers() == 200

    worker = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], env=_worker_env(app),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _count_fired(app) < 40 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        os.killpg(worker.pid, signal.SIGKILL)  # kill -9, likely mid-job
        worker.wait()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    fired_before = _count_fired(app)
    assert 40 <= fired_before < 200

    redis_conn.flushall()  # every queued job and every "already enqueued" mark is gone
    assert poll_timers() == 200 - fired_before  # the database still knows what is due
    run_worker()

    counts = _fired_counts(app)
    assert len(counts) == 200 and set(counts.values()) == {1}
    with app.app_context():
        statuses = db.session.scalars(select(ProcessInstance.status)).all()
        assert statuses == ["completed"] * 200


def test_a_non_interrupting_cycle_timer_fires_each_cycle_once_and_stops_with_its_task(
        deploy, start, client, designer, poll_timers, run_worker, app):
    deploy("reminder_cycle.bpmn")
    with time_machine.travel(START, tick=False) as clock:
        detail = start("reminder_cycle")
        assert [t["due_at"][:19] for t in detail["timers"]] == ["2026-03-02T10:00:00"]
        for hour in (1, 2):
            clock.move_to(START + timedelta(hours=hour, minutes=1))
            assert poll_timers() == 1
            run_worker()
        view = client.get(f"/api/v1/instances/{detail['instance']['id']}", headers=designer).get_json()
        assert view["instance"]["status"] == "running"
        assert [t["due_at"][:19] for t in view["timers"]] == ["2026-03-02T12:00:00"]
        assert view["data"].get("reminded") is True
        [task] = view["tasks"]
        done = client.post(f"/api/v1/tasks/{task['id']}/complete",
                           json={"data": {}, "version": view["instance"]["version"]}, headers=designer).get_json()
        assert done["instance"]["status"] == "completed" and done["timers"] == []
        clock.move_to(START + timedelta(hours=5))
        assert poll_timers() == 0
    assert sorted(_fired_counts(app).values()) == [1, 1]


def test_a_timer_start_event_waits_then_runs(deploy, start, poll_timers, run_worker, app):
    deploy("timer_start.bpmn")
    with time_machine.travel(START, tick=False) as clock:
        detail = start("timer_start")
        assert detail["instance"]["status"] == "running"
        assert detail["timers"][0]["due_at"].startswith("2026-03-02T09:30:00")
        clock.move_to(START + timedelta(minutes=31))
        assert poll_timers() == 1
        run_worker()
    with app.app_context():
        instance = db.session.get(ProcessInstance, detail["instance"]["id"])
        assert instance.status == "completed" and instance.data["worked"] is True


def test_a_suspended_instance_keeps_its_timer_until_resumed(deploy, start, client, designer, poll_timers,
                                                            run_worker, app):
    deploy("delay.bpmn")
    with time_machine.travel(START, tick=False) as clock:
        detail = start("delay")
        iid = detail["instance"]["id"]
        client.post(f"/api/v1/instances/{iid}/suspend", json={}, headers=designer)
        clock.move_to(START + timedelta(minutes=20))
        assert poll_timers() == 0
        client.post(f"/api/v1/instances/{iid}/resume", json={}, headers=designer)
        assert poll_timers() == 1
        run_worker()
    with app.app_context():
        assert db.session.get(ProcessInstance, iid).status == "completed"


def test_several_pollers_at_once_hand_each_due_timer_to_rq_once(deploy, start, app, redis_conn):
    from server.jobs.poller import enqueue_due_timers
    from server.jobs.queues import TIMERS, get_queue

    deploy("delay.bpmn")
    with time_machine.travel(datetime.now(UTC) - timedelta(hours=1), tick=False):
        for _ in range(100):
            start("delay")
    counts: list[int] = []
    barrier = threading.Barrier(4)

    def poller():
        with app.app_context():
            barrier.wait()
            counts.append(enqueue_due_timers())
            db.session.remove()

    threads = [threading.Thread(target=poller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with app.app_context():
        queued = [timer_id for job in get_queue(TIMERS).get_jobs() for timer_id in job.args[0]]
    assert sum(counts) == 100 and sorted(queued) == sorted(set(queued)) and len(queued) == 100



def slow_job(seconds: float) -> str:
    """A job that takes a while, so Redis can go away while a worker runs it."""
    time.sleep(seconds)
    return "done"


def test_a_worker_outlives_a_redis_restart_in_the_middle_of_a_job(app, tmp_path):
    # Found by bench/fault_injection.py: RQ's loop quits when it cannot record a job's end, so a Redis
    # restart ended every busy worker process and timers stopped firing until someone restarted them.
    from rq import Queue

    server = EmbeddedRedis(tmp_path, name="restarting")
    url = server.start()
    env = {**_worker_env(app), "REDIS_URL": url}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        job = Queue("default", connection=redis.Redis.from_url(url)).enqueue(slow_job, 1)
        deadline = time.monotonic() + 60
        while job.get_status() != "started" and time.monotonic() < deadline:
            time.sleep(0.05)
        redis.Redis.from_url(url).flushall()
        server.stop()  # the job ends while Redis is away
        deadline = time.monotonic() + 60
        while "starting a fresh one" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)  # until the worker has noticed: its job ended and Redis did not answer
        server.start()
        after = Queue("default", connection=redis.Redis.from_url(url)).enqueue(slow_job, 0)
        deadline = time.monotonic() + 60
        while after.get_status() != "finished" and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert worker.poll() is None and after.get_status() == "finished", log_path.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_worker_asked_to_stop_stops_and_starts_no_other(app, tmp_path, redis_conn, sig):
    # Found on Ctrl-C: the worker logged "stopped without being asked to" and started a fresh one.
    from rq import Worker

    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], env=_worker_env(app), stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not Worker.all(connection=redis_conn) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert Worker.all(connection=redis_conn), log_path.read_text()[-3000:]
        os.killpg(worker.pid, sig)  # as a terminal's Ctrl-C or systemd's stop: the whole group
        assert worker.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    text = log_path.read_text()
    assert "fresh one" not in text and "without being asked" not in text, text[-3000:]
    assert Worker.all(connection=redis_conn) == []  # it unregistered, and no second one came up


def test_a_timer_already_due_when_reached_fires_at_once_with_its_row_and_audit(deploy, start, app):
    # Found by bench/fault_injection.py: an SLA warning whose moment had passed when its step began fired
    # inside the same engine run, so it had no timer row and no timer_fired audit entry, yet its path ran.
    overdue = (TEST_BPMN / "delay.bpmn").read_text().replace(
        '<bpmn:timeDuration>"PT10M"</bpmn:timeDuration>', "<bpmn:timeDate>past_moment</bpmn:timeDate>")
    deploy(files={"delay.bpmn": overdue})
    detail = start("delay", {"past_moment": "2020-01-01T00:00:00+00:00"})
    assert detail["instance"]["status"] == "completed" and detail["timers"] == []
    with app.app_context():
        rows = db.session.execute(select(Timer).where(Timer.instance_id == detail["instance"]["id"])).scalars().all()
        assert [(t.element_id, t.fired_at is not None, t.cancelled_at) for t in rows] == [
            ("wait_ten_minutes", True, None)]
        assert rows[0].due_at == datetime(2020, 1, 1, tzinfo=UTC)
    assert _fired_counts(app) == {rows[0].id: 1}


def test_a_subprocess_timer_due_during_another_action_fires_in_it_with_its_row_and_audit(deploy, start, client,
                                                                                        designer, app):
    # Found by bench/fault_injection.py: a boundary timer inside a subprocess that came due while another
    # branch's task was completed became ready at the very end of that run without running; its row was
    # closed as cancelled, and its path (an SLA warning, an escalation) ran later inside some other action.
    deploy("timer_in_subprocess.bpmn")
    with time_machine.travel(START, tick=False):
        detail = start("timer_in_subprocess")
    other = next(t for t in detail["tasks"] if t["element_id"] == "other")
    with time_machine.travel(START + timedelta(seconds=6), tick=False):
        response = client.post(f"/api/v1/tasks/{other['id']}/complete",
                               json={"data": {}, "version": detail["instance"]["version"]}, headers=designer)
    assert response.status_code == 200, response.get_json()
    with app.app_context():
        timer = db.session.get(Timer, detail["timers"][0]["id"])
        assert (timer.element_id, timer.fired_at is not None, timer.cancelled_at) == ("late", True, None)
        instance = db.session.get(ProcessInstance, detail["instance"]["id"])
        assert "late" not in instance.active_element_ids  # it ran in that same action
    assert _fired_counts(app) == {timer.id: 1}
