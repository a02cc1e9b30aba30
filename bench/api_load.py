"""API load: the task inbox, task completion, the engineer's work-order list and position pings, each
at 8 / 32 / 64 concurrent keep-alive clients against gunicorn as ``run`` starts it (SQLite and
PostgreSQL), reporting throughput and p50 / p99 latency. Baseline, measured in the same run at the same
concurrency just before: ``GET /api/v1/me`` — the cheapest authenticated call (token check, one small
JSON answer). The ratio is the endpoint's throughput over the baseline's."""

from __future__ import annotations

import queue
import subprocess
import threading
from pathlib import Path

from .harness import PASSWORD, call, closed_loop, connect, log_in, machine_line, running_server

BPMN = Path(__file__).parent / "workflows" / "bench_review.bpmn"
INBOX_USER = ("finance", "finance-demo-1")  # seeds/users.json; nothing else gives this role tasks
INBOX_TASKS = 1000
ENGINEER_PASSWORD = "engineer-demo-1"  # seeds/service.json: eng01 … eng60
SERVICE_REQUESTS = 120
TARGET = {"endpoint": "task completion", "clients": 32, "p99_ms": 100.0}
MAX_COMPLETIONS_PER_SECOND = 400  # sizes the pool of open tasks: every completion in a window is real


def start_reviews(port: int, token: str, role: str, count: int) -> queue.Queue:
    """Start ``count`` instances of the bench review process (8 clients at once); each leaves one open
    task for ``role``. Returns ``(task id, instance version)`` pairs."""
    tasks: queue.Queue = queue.Queue()
    left = iter(range(count))
    lock = threading.Lock()

    def starter(conn, _index) -> bool:
        with lock:
            if next(left, None) is None:
                return False
        detail = call(conn, "POST", "/api/v1/processes/bench_review/instances", token, {"data": {"role": role}})
        tasks.put((detail["tasks"][0]["id"], detail["instance"]["version"]))
        return True

    closed_loop(port, 8, 3600, starter, warmup=0)
    return tasks


def engineers_with_work_orders(port: int, dispatcher: str) -> list[str]:
    """Report faults on the demo assets (dispatch offers each to the nearest engineer on shift), then
    log in the seeded engineers and keep the tokens of those with at least one open work order."""
    conn = connect(port)
    assets = call(conn, "GET", "/api/v1/assets?limit=200", dispatcher)
    items = assets["items"] if isinstance(assets, dict) else assets
    for n in range(SERVICE_REQUESTS):
        call(conn, "POST", "/api/v1/service-requests", dispatcher,
             {"asset_id": items[n % len(items)]["id"], "description": f"bench fault {n}", "priority": "normal"})
    tokens = []
    for n in range(1, 61):
        token = log_in(port, f"eng{n:02d}", ENGINEER_PASSWORD)
        if call(conn, "GET", "/api/mobile/v1/work-orders", token)["items"]:
            tokens.append(token)
    if not tokens:
        raise RuntimeError("dispatch gave no engineer a work order")
    return tokens


def endpoints(designer: str, inbox_user: str, engineers: list[str], pool: queue.Queue) -> dict:
    """The steps measured, by name; the baseline first."""

    def baseline(conn, _index) -> bool:
        return call(conn, "GET", "/api/v1/me", designer) is not None

    def inbox(conn, _index) -> bool:
        return len(call(conn, "GET", "/api/v1/tasks", inbox_user)) > 0

    def complete(conn, _index) -> bool:
        try:
            task_id, version = pool.get_nowait()
        except queue.Empty:
            return False
        done = call(conn, "POST", f"/api/v1/tasks/{task_id}/complete", designer,
                    {"data": {"approved": True}, "version": version})
        return done["instance"]["status"] == "completed"

    def work_orders(conn, index) -> bool:
        return len(call(conn, "GET", "/api/mobile/v1/work-orders", engineers[index % len(engineers)])["items"]) > 0

    def ping(conn, index) -> bool:
        position = {"lat": 31.2 + (index % 10) / 100, "lon": 121.4 + (index % 7) / 100}
        return call(conn, "POST", "/api/mobile/v1/me/position", engineers[index % len(engineers)], position) is not None

    return {"baseline: GET /api/v1/me": baseline, "task inbox": inbox, "task completion": complete,
            "work-order list": work_orders, "position ping": ping}


def run(lanes: list[str], clients: list[int], seconds: float, web_workers: int, threads: int) -> list[dict]:
    """Every lane × client count × endpoint; print and return the rows."""
    rows = []
    print(machine_line())
    for lane in lanes:
        try:
            with running_server(lane, web_workers, threads, seed=True) as port:
                rows += run_lane(lane, port, clients, seconds, web_workers, threads)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"{lane}: skipped — {err}")
    return rows


def run_lane(lane: str, port: int, clients: list[int], seconds: float, web_workers: int, threads: int) -> list[dict]:
    """Set up the data on a running server, then measure every client count."""
    designer = log_in(port, "bench", PASSWORD)
    inbox_user = log_in(port, *INBOX_USER)
    call(connect(port), "POST", "/api/v1/processes", designer, {"files": {BPMN.name: BPMN.read_text()}})
    start_reviews(port, designer, "finance", INBOX_TASKS)
    engineers = engineers_with_work_orders(port, log_in(port, "dispatcher", "dispatch-demo-1"))
    print(f"{lane}: inbox of {INBOX_USER[0]!r}: {INBOX_TASKS} open tasks (pages of 100); "
          f"{len(engineers)} engineers with open work orders", flush=True)
    rows = []
    for count in clients:
        pool = start_reviews(port, designer, "designer", int(MAX_COMPLETIONS_PER_SECOND * (seconds + 1)))
        baseline = None
        for name, step in endpoints(designer, inbox_user, engineers, pool).items():
            figures = closed_loop(port, count, seconds, step)
            baseline = baseline or figures
            row = {"lane": lane, "endpoint": name, "clients": count, "web_workers": web_workers, "threads": threads,
                   **figures, "baseline_per_second": baseline["per_second"], "baseline_p99_ms": baseline["p99_ms"],
                   "ratio": round(figures["per_second"] / baseline["per_second"], 3)}
            rows.append(row)
            note = ""
            if name == TARGET["endpoint"] and count == TARGET["clients"]:
                met = figures["p99_ms"] <= TARGET["p99_ms"]
                note = f"  ({'meets' if met else 'MISSES'} p99 ≤ {TARGET['p99_ms']:g} ms)"
            print(f"{lane:<10} {name:<26} clients={count:<3} {figures['per_second']:7.1f}/s  "
                  f"p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
                  f"ratio to baseline {row['ratio']:.3f}{note}", flush=True)
    return rows
