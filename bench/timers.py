"""Timer delivery: N pending timers (real rows, created by starting instances of a process that waits
until its ``due_at``) all coming due inside one minute, delivered by the product's own poller and two
RQ worker processes (``server.cli poll-timers`` / ``server.cli worker``). Reports lateness (fired − due)
p50 / p99 / max, fires per second, and checks that none was lost and none fired twice. The baseline,
measured in the same run: timers of the same process fired in-process by ``fire_timer`` in one loop
(no poller, no RQ, no Redis) — the ratio is delivered fires/s over that."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from .harness import ROOT, load_average, machine_line, percentile, server_env

BPMN = Path(__file__).parent / "workflows" / "timer_bench.bpmn"
TARGET_P99_SECONDS = 1.0
BASELINE_TIMERS = 300
START_MARGIN_SECONDS = 10.0  # between the last timer created and the first one due: poller and workers start


@contextmanager
def environment(env: dict) -> Iterator[None]:
    """The lane's environment for this process too (the in-process app reads its config from it)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_waiting(app, count: int, first_due: datetime, spread_seconds: float) -> list[int]:
    """Start ``count`` instances of the bench process, as the product does (``instances.start_instance``,
    one transaction each); their timers fall due evenly over ``spread_seconds`` from ``first_due``."""
    from server.db import transaction
    from server.processes import instances

    ids = []
    with app.app_context():
        for n in range(count):
            due = first_due + timedelta(seconds=spread_seconds * n / max(1, count))
            with transaction():
                view = instances.start_instance("timer_bench", {"due_at": due.isoformat()})
            ids.append(view["instance"].id)
    return ids


def baseline(app, count: int = BASELINE_TIMERS) -> tuple[float, float, float]:
    """The baseline: fires per second of ``fire_timer`` called in-process on already-due timers, and the
    CPU seconds per fire. Also returns how many instances per second were started for them (sizes the
    wait before the real run)."""
    from server.db import transaction, utcnow
    from server.extensions import db
    from server.processes import timers
    from server.processes.models import Timer

    due = utcnow() + timedelta(seconds=count / 50)  # after the last start (a timer due at its start just runs)
    began = time.perf_counter()
    instance_ids = start_waiting(app, count, due, 0)
    starts_per_second = count / (time.perf_counter() - began)
    time.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.1)
    with app.app_context():
        timer_ids = db.session.scalars(select(Timer.id).where(Timer.instance_id.in_(instance_ids))).all()
        began, cpu = time.perf_counter(), time.process_time()
        for timer_id in timer_ids:
            with transaction():
                timers.fire_timer(timer_id)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        left = db.session.scalar(select(func.count()).select_from(Timer).where(
            Timer.instance_id.in_(instance_ids), Timer.fired_at.is_(None)))
        if left:
            raise RuntimeError(f"the in-process baseline left {left} timers unfired")
    return len(timer_ids) / elapsed, cpu / len(timer_ids), starts_per_second


def start_delivery(env: dict, workers: int) -> list[subprocess.Popen]:
    """The product's poller and ``workers`` RQ workers, as separate processes (their logs go to
    ``delivery.log`` in the lane's data dir)."""
    cli = [sys.executable, "-m", "server.cli"]
    commands = [[*cli, "poll-timers"], *([*cli, "worker", "--name", f"bench-{n}"] for n in range(workers))]
    with open(Path(env["FLOWDESK_DATA_DIR"]) / "delivery.log", "ab") as log:
        return [subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True, stdout=log,
                                 stderr=subprocess.STDOUT) for command in commands]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate the children we started, killing any that do not stop in 20 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_fires(app, instance_ids: list[int], deadline: float) -> None:
    """Poll the database once a second until every bench timer fired (or the deadline passes)."""
    from server.extensions import db
    from server.processes.models import Timer

    with app.app_context():
        while time.monotonic() < deadline:
            pending = db.session.scalar(select(func.count()).select_from(Timer).where(
                Timer.instance_id.in_(instance_ids), Timer.fired_at.is_(None)))
            db.session.rollback()
            if pending == 0:
                return
            time.sleep(1)


def measure(app, instance_ids: list[int]) -> dict:
    """Lateness, fires per second, lost and fired-twice counts of the bench timers (rows + audit)."""
    from server.extensions import db
    from server.processes.models import AuditEvent, Timer

    with app.app_context():
        rows = db.session.execute(select(Timer.id, Timer.due_at, Timer.fired_at).where(
            Timer.instance_id.in_(instance_ids))).all()
        audit = db.session.scalars(select(AuditEvent.data).where(
            AuditEvent.event == "timer_fired", AuditEvent.instance_id.in_(instance_ids))).all()
    fired = [r for r in rows if r.fired_at is not None]
    if not fired:
        raise RuntimeError("no timer fired")
    lateness = sorted(max(0.0, (r.fired_at - r.due_at).total_seconds()) for r in fired)
    fires_per_timer: dict[int, int] = {}
    for data in audit:
        fires_per_timer[data["timer_id"]] = fires_per_timer.get(data["timer_id"], 0) + 1
    span = (max(r.fired_at for r in fired) - min(r.fired_at for r in fired)).total_seconds()
    return {"fired": len(fired), "lost": len(rows) - len(fired),
            "fired_twice": sum(1 for n in fires_per_timer.values() if n > 1),
            "fires_per_second": round(len(fired) / max(0.001, span), 1),
            "lateness_p50_s": round(statistics.median(lateness), 3),
            "lateness_p99_s": round(percentile(lateness, 0.99), 3), "lateness_max_s": round(lateness[-1], 3)}


def run_lane(lane: str, count: int, spread: float, workers: int, poll_seconds: float) -> dict:
    """One lane: baseline, create the timers, start poller + workers, wait for every timer, measure."""
    procs: list[subprocess.Popen] = []
    with server_env(lane) as env, environment(env):
        env["FLOWDESK_TIMER_POLL_SECONDS"] = str(poll_seconds)
        from server.app import create_app
        from server.db import transaction, utcnow
        from server.processes import deploy

        app = create_app({"LOG_LEVEL": "WARNING"})
        with app.app_context(), transaction():
            deploy.deploy_bundle({BPMN.name: BPMN.read_bytes()}, source="bench")
        baseline_rate, baseline_cpu, starts_per_second = baseline(app)
        # The first timer falls due a little after the last one is created (estimated from the baseline's
        # starts, with room to spare), so all of them are pending before delivery begins.
        first_due = utcnow() + timedelta(seconds=1.5 * count / starts_per_second + START_MARGIN_SECONDS)
        began = time.perf_counter()
        instance_ids = start_waiting(app, count, first_due, spread)
        created = time.perf_counter() - began
        late_start = (utcnow() - first_due).total_seconds()
        if late_start > -2:
            print(f"{lane}: warning — timers were still being created {late_start:+.1f} s from the first due")
        try:
            procs = start_delivery(env, workers)
            wait_for_fires(app, instance_ids, time.monotonic() + (first_due - utcnow()).total_seconds() + spread + 300)
            cpu = [cpu_seconds(proc.pid) for proc in procs]  # the poller first, then the workers
        finally:
            stop(procs)
        figures = measure(app, instance_ids)
    return {"lane": lane, "timers": count, "spread_seconds": spread, "workers": workers, "load_average": load_average(),
            "poll_seconds": poll_seconds, "creation_seconds": round(created, 1),
            "baseline_fires_per_second": round(baseline_rate, 1), **figures,
            # CPU per fire (includes the workers' start-up): what the delivery path costs beside fire_timer itself.
            "baseline_cpu_ms_per_fire": round(1000 * baseline_cpu, 2),
            "workers_cpu_ms_per_fire": round(1000 * sum(cpu[1:]) / max(1, figures["fired"]), 2),
            "poller_cpu_ms_per_fire": round(1000 * cpu[0] / max(1, figures["fired"]), 2),
            "ratio": round(figures["fires_per_second"] / baseline_rate, 3), "target_p99_s": TARGET_P99_SECONDS}


def run(lanes: list[str], count: int, spread: float, workers: int, poll_seconds: float) -> list[dict]:
    """Every lane; print and return the rows."""
    rows = []
    print(machine_line())
    for lane in lanes:
        try:
            row = run_lane(lane, count, spread, workers, poll_seconds)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"{lane}: skipped — {err}")
            continue
        rows.append(row)
        verdict = "meets" if row["lateness_p99_s"] <= TARGET_P99_SECONDS else "MISSES"
        print(f"{lane:<10} {count} timers over {spread:g} s, {workers} workers, poll {poll_seconds:g} s: "
              f"baseline (in-process fire_timer) {row['baseline_fires_per_second']}/s, delivered "
              f"{row['fires_per_second']}/s, ratio {row['ratio']}; lateness p50 {row['lateness_p50_s']} s, "
              f"p99 {row['lateness_p99_s']} s, max {row['lateness_max_s']} s "
              f"({verdict} p99 ≤ {TARGET_P99_SECONDS:g} s); lost {row['lost']}, fired twice {row['fired_twice']}; "
              f"CPU per fire: in-process {row['baseline_cpu_ms_per_fire']} ms, workers "
              f"{row['workers_cpu_ms_per_fire']} ms, poller {row['poller_cpu_ms_per_fire']} ms",
              flush=True)
    return rows
