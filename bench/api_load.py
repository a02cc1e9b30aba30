"""API load: the task inbox, task completion, the engineer's work-order list and position pings, each
at 8 / 32 / 64 concurrent keep-alive clients (asyncio + aiohttp) against gunicorn as ``run`` starts it
(SQLite and PostgreSQL), reporting throughput and p50 / p99 latency. Baseline, measured in the same run
at the same concurrency just before: ``GET /api/v1/me`` — the cheapest authenticated call (token check,
one small JSON answer). The ratio is the endpoint's throughput over the baseline's.

Tasks come from ``workflows/reference_cycle.bpmn`` (its review task is open to everyone): the first
``INBOX_TASKS`` instances started stay open, so the inbox (oldest first, pages of 100) always shows a
full page out of at least that many; each client count then gets a fresh pool of started instances
whose tasks are completed, one real completion per call."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from .harness import PASSWORD, call, closed_loop, connect, load_average, log_in, machine_line, running_server
from .profile import start_sampling, summary

INBOX_USER = ("finance", "finance-demo-1")  # seeds/users.json: a plain user (not admin) with a role
INBOX_TASKS = 1000
DISPATCHER = ("dispatcher", "dispatch-demo-1")
ENGINEER_PASSWORD = "engineer-demo-1"  # seeds/service.json: eng01 … eng60
SERVICE_REQUESTS = 120
TARGET = {"endpoint": "task completion", "clients": 32, "p99_ms": 100.0}
MAX_COMPLETIONS_PER_SECOND = 400  # sizes the pool of open tasks: every completion in a window is real


async def start_cycles(port: int, token: str, count: int) -> asyncio.Queue:
    """Start ``count`` reference-cycle instances (8 clients at once); each leaves its review task open.
    Returns a queue of ``(task id, instance version)`` pairs."""
    tasks: asyncio.Queue = asyncio.Queue()
    left = iter(range(count))

    async def starter(session, _index) -> bool:
        if next(left, None) is None:
            return False
        detail = await call(session, "POST", "/api/v1/processes/reference_cycle/instances", token, {"data": {}})
        tasks.put_nowait((detail["tasks"][0]["id"], detail["instance"]["version"]))
        return True

    await closed_loop(port, 8, 3600, starter, warmup=0)
    return tasks


async def engineers_with_work_orders(port: int) -> list[str]:
    """Report faults on the demo assets (dispatch offers each to the nearest engineer on shift), then
    log in the seeded engineers and keep the tokens of those with at least one open work order."""
    dispatcher = await log_in(port, *DISPATCHER)
    async with connect(port) as session:
        assets = await call(session, "GET", "/api/v1/assets?limit=200", dispatcher)
        items = assets["items"] if isinstance(assets, dict) else assets
        for n in range(SERVICE_REQUESTS):
            await call(session, "POST", "/api/v1/service-requests", dispatcher,
                       {"asset_id": items[n % len(items)]["id"], "description": f"bench fault {n}",
                        "priority": "normal"})
        tokens = []
        for n in range(1, 61):
            token = await log_in(port, f"eng{n:02d}", ENGINEER_PASSWORD)
            if (await call(session, "GET", "/api/mobile/v1/work-orders", token))["items"]:
                tokens.append(token)
    if not tokens:
        raise RuntimeError("dispatch gave no engineer a work order")
    return tokens


def endpoints(designer: str, inbox_user: str, engineers: list[str], pool: asyncio.Queue) -> dict:
    """The steps measured, by name; the baseline first."""

    async def baseline(session, _index) -> bool:
        return await call(session, "GET", "/api/v1/me", designer) is not None

    async def inbox(session, _index) -> bool:
        return len(await call(session, "GET", "/api/v1/tasks", inbox_user)) == 100

    async def complete(session, _index) -> bool:
        try:
            task_id, version = pool.get_nowait()
        except asyncio.QueueEmpty:
            return False
        done = await call(session, "POST", f"/api/v1/tasks/{task_id}/complete", designer,
                          {"data": {"approved": True}, "version": version})
        return done["instance"]["status"] == "completed"

    async def work_orders(session, index) -> bool:
        answer = await call(session, "GET", "/api/mobile/v1/work-orders", engineers[index % len(engineers)])
        return len(answer["items"]) > 0

    async def ping(session, index) -> bool:
        position = {"lat": 31.2 + (index % 10) / 100, "lon": 121.4 + (index % 7) / 100}
        token = engineers[index % len(engineers)]
        return await call(session, "POST", "/api/mobile/v1/me/position", token, position) is not None

    return {"baseline: GET /api/v1/me": baseline, "task inbox": inbox, "task completion": complete,
            "work-order list": work_orders, "position ping": ping}


def run(lanes: list[str], clients: list[int], seconds: float, web_workers: int, threads: int,
        profile_dir: Path | None = None) -> list[dict]:
    """Every lane × client count × endpoint; print and return the rows. With ``profile_dir``, then sample
    the server with py-spy during task completion at the target's concurrency, print where its CPU goes
    and keep the raw stacks there."""
    rows = []
    print(machine_line())
    for lane in lanes:
        try:
            with running_server(lane, web_workers, threads, seed=True) as (port, pid):
                rows += asyncio.run(run_lane(lane, port, clients, seconds, web_workers, threads))
                if profile_dir is not None:
                    asyncio.run(profile_completion(lane, port, pid, seconds, profile_dir / f"api_profile_{lane}.txt"))
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"{lane}: skipped — {err}")
    return rows


async def profile_completion(lane: str, port: int, pid: int, seconds: float, output: Path) -> None:
    """Task completion at the target's concurrency again, with every gunicorn worker sampled by py-spy;
    the raw stacks go to ``output``."""
    designer = await log_in(port, "bench", PASSWORD)
    pool = await start_cycles(port, designer, int(MAX_COMPLETIONS_PER_SECOND * (seconds + 2)))
    complete = endpoints(designer, "", [], pool)["task completion"]
    spy = start_sampling(pid, seconds, output)
    figures = await closed_loop(port, TARGET["clients"], seconds, complete, warmup=1.0)
    await asyncio.to_thread(spy.wait, seconds + 60)
    print(f"{lane}: profile of task completion at {TARGET['clients']} clients ({figures['per_second']}/s, "
          f"p99 {figures['p99_ms']} ms under py-spy), share of server CPU samples by package:\n"
          f"{summary(output.read_text())}\n  raw stacks: {output}", flush=True)


def verdict(name: str, clients: int, p99_ms: float) -> str:
    """`` (meets …)`` / `` (MISSES …)`` for the row the target is about, else nothing."""
    if name != TARGET["endpoint"] or clients != TARGET["clients"]:
        return ""
    return f"  ({'meets' if p99_ms <= TARGET['p99_ms'] else 'MISSES'} p99 ≤ {TARGET['p99_ms']:g} ms)"


async def run_lane(lane: str, port: int, clients: list[int], seconds: float, web_workers: int,
                   threads: int) -> list[dict]:
    """Set up the data on a running server, then measure every client count."""
    designer = await log_in(port, "bench", PASSWORD)
    inbox_user = await log_in(port, *INBOX_USER)
    await start_cycles(port, designer, INBOX_TASKS)  # the oldest open tasks: the inbox's first pages
    engineers = await engineers_with_work_orders(port)
    print(f"{lane}: inbox of {INBOX_USER[0]!r}: {INBOX_TASKS} open tasks or more (pages of 100); "
          f"{len(engineers)} engineers with open work orders", flush=True)
    rows = []
    for count in clients:
        pool = await start_cycles(port, designer, int(MAX_COMPLETIONS_PER_SECOND * (seconds + 1)))
        baseline = None
        for name, step in endpoints(designer, inbox_user, engineers, pool).items():
            figures = await closed_loop(port, count, seconds, step)
            baseline = baseline or figures
            row = {"lane": lane, "endpoint": name, "clients": count, "web_workers": web_workers, "threads": threads,
                   "load_average": load_average(), **figures, "baseline_per_second": baseline["per_second"],
                   "baseline_p99_ms": baseline["p99_ms"],
                   "ratio": round(figures["per_second"] / baseline["per_second"], 3)}
            rows.append(row)
            print(f"{lane:<10} {name:<26} clients={count:<3} {figures['per_second']:7.1f}/s  "
                  f"p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
                  f"ratio to baseline {row['ratio']:.3f}{verdict(name, count, figures['p99_ms'])}", flush=True)
    return rows
