"""API load: the task inbox, task completion, the engineer's work-order list and position pings, each
at 8 / 32 / 64 concurrent keep-alive clients against gunicorn as ``run`` starts it (SQLite and
PostgreSQL), reporting throughput and p50 / p99 latency. Baseline, measured in the same run at the same
concurrency: ``GET /api/v1/me`` — the cheapest authenticated call (token check, one small JSON answer);
the ratio is the endpoint's throughput over it."""

from __future__ import annotations

import http.client
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

from .engine_cycles import PASSWORD, running_server
from .pg import ThrowawayPostgres

SEED_ENGINEER_PASSWORD = "engineer-demo-1"  # seeds/service.json
TARGET = {"endpoint": "task completion", "clients": 32, "p99_ms": 100.0}


def _request(conn, method: str, path: str, token: str, body: dict | None = None) -> dict | list:
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    if response.status >= 300:
        raise RuntimeError(f"{method} {path} -> {response.status}: {payload}")
    return payload


def _token(port: int, username: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return _request(conn, "POST", "/api/v1/auth/token", "", {"username": username, "password": password})[
        "access_token"]


def load(port: int, clients: int, seconds: float, call, warmup: float = 1.0) -> dict:
    """``clients`` threads calling ``call(conn, client_index)`` in a loop; latencies of the measured window."""
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    latencies: list[float] = []
    ends: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, end = [], start_at
        try:
            while (begun := time.perf_counter()) < stop_at:
                if not call(conn, index):
                    break  # out of work (e.g. no open task left)
                if begun >= start_at:
                    end = time.perf_counter()
                    mine.append(end - begun)
        except Exception as err:  # noqa: BLE001 - report, do not hang
            errors.append(str(err)[:300])
        with lock:
            latencies.extend(mine)
            ends.append(end)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + warmup + 120)
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, e.g. {errors[0]}")
    if not latencies:
        raise RuntimeError("no call finished inside the measured window")
    elapsed = max(1e-3, min(stop_at, max(ends)) - start_at)
    latencies.sort()
    return {"per_second": round(len(latencies) / elapsed, 1), "calls": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 1)}


def _open_tasks(port: int, token: str, count: int) -> queue.Queue:
    """Start ``count`` reference-cycle instances (8 clients at once); each leaves one task to complete."""
    tasks: queue.Queue = queue.Queue()

    def starter(conn, _index):
        if tasks.qsize() >= count:
            return False
        detail = _request(conn, "POST", "/api/v1/processes/reference_cycle/instances", token, {"data": {}})
        tasks.put((detail["tasks"][0]["id"], detail["instance"]["version"]))
        return True

    load(port, 8, 3600, starter, warmup=0)
    return tasks


def _engineer_tokens(port: int, count: int) -> list[str]:
    return [_token(port, f"eng{n:02d}", SEED_ENGINEER_PASSWORD) for n in range(1, count + 1)]


def _work_orders_for_engineers(port: int, dispatcher: str, requests: int) -> None:
    """Open service requests on the demo assets: dispatch offers them to the nearest engineers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    assets = _request(conn, "GET", "/api/v1/assets?limit=200", dispatcher)
    items = assets["items"] if isinstance(assets, dict) else assets
    for n in range(requests):
        asset = items[n % len(items)]
        _request(conn, "POST", "/api/v1/service-requests", dispatcher,
                 {"asset_id": asset["id"], "description": f"bench fault {n}", "priority": "normal"})


def _endpoints(designer: str, engineers: list[str], tasks: queue.Queue) -> dict:
    """The calls measured, by name; the baseline first."""

    def complete(conn, _index):
        try:
            task_id, version = tasks.get_nowait()
        except queue.Empty:
            return False
        _request(conn, "POST", f"/api/v1/tasks/{task_id}/complete", designer,
                 {"data": {"approved": True}, "version": version})
        return True

    def work_orders(conn, index):
        return _request(conn, "GET", "/api/mobile/v1/work-orders", engineers[index % len(engineers)]) or True

    def ping(conn, index):
        position = {"lat": 31.2 + (index % 10) / 100, "lon": 121.4 + (index % 7) / 100}
        return _request(conn, "POST", "/api/mobile/v1/me/position", engineers[index % len(engineers)], position)

    return {
        "baseline: GET /me": lambda conn, _index: _request(conn, "GET", "/api/v1/me", designer),
        "task inbox": lambda conn, _index: _request(conn, "GET", "/api/v1/tasks", designer) or True,
        "task completion": complete,
        "work-order list": work_orders,
        "position ping": ping,
    }


def run(lanes: list[str], clients: list[int], seconds: float, web_workers: int, threads: int) -> list[dict]:
    """Every lane × endpoint × client count; print and return the rows."""
    rows = []
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; command: {' '.join(sys.argv)}")
    for lane in lanes:
        pg = None
        try:
            url = None
            if lane == "postgresql":
                url = os.environ.get("DATABASE_URL") or (pg := ThrowawayPostgres()).start()
            with running_server(url, web_workers, threads, seed=True) as port:
                designer = _token(port, "bench", PASSWORD)
                dispatcher = _token(port, "dispatcher", "dispatch-demo-1")
                engineers = _engineer_tokens(port, 60)
                _work_orders_for_engineers(port, dispatcher, 120)
                _open_tasks(port, designer, 300)  # the inbox has something to list
                for count in clients:
                    tasks = _open_tasks(port, designer, int(300 * (seconds + 1)))  # > completions possible

                    endpoints = _endpoints(designer, engineers, tasks)
                    baseline = None
                    for name, call in endpoints.items():
                        figures = load(port, count, seconds, call)
                        baseline = baseline or figures["per_second"]
                        row = {"lane": lane, "endpoint": name, "clients": count, "web_workers": web_workers,
                               **figures, "baseline_per_second": baseline,
                               "ratio": round(figures["per_second"] / baseline, 3)}
                        rows.append(row)
                        note = ""
                        if name == TARGET["endpoint"] and count == TARGET["clients"]:
                            met = figures["p99_ms"] <= TARGET["p99_ms"]
                            note = f"  ({'meets' if met else 'MISSES'} p99 ≤ {TARGET['p99_ms']:g} ms)"
                        print(f"{lane:<10} {name:<18} clients={count:<3} {figures['per_second']:8.1f}/s  "
                              f"p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
                              f"ratio to baseline {row['ratio']:.3f}{note}", flush=True)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"{lane}: skipped — {err}")
        finally:
            if pg is not None:
                pg.stop()
    return rows
