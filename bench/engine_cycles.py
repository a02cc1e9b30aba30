"""Engine cycles per second: the reference process (start → script → user task → end) driven through
the HTTP API of a production-style server (gunicorn on loopback, concurrent keep-alive clients) against
the same cycles run in-process on SpiffWorkflow alone (no DB, no HTTP), measured in the same run."""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from server.jobs.redis_server import EmbeddedRedis

from .pg import ThrowawayPostgres

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "workflows" / "reference_cycle.bpmn"
PASSWORD = "bench-password-1"
TARGETS = {"sqlite": 0.5, "postgresql": 0.35}


def spiff_cycles_per_second(seconds: float) -> float:
    """The baseline: full cycles on SpiffWorkflow alone, with the serializations a server would do."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(REFERENCE))
    spec, subprocess_specs = parser.get_spec("reference_cycle"), parser.get_subprocess_specs("reference_cycle")
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def cycle():
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.do_engine_steps()
        workflow = serializer.deserialize_json(serializer.serialize_json(workflow))
        task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
        task.set_data(approved=True)
        task.run()
        workflow.do_engine_steps()
        serializer.serialize_json(workflow)
        assert workflow.completed

    for _ in range(50):
        cycle()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        cycle()
        count += 1
    return count / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


@contextmanager
def running_server(database_url: str | None, web_workers: int, threads: int, seed: bool = False):
    """Migrate, create a user, deploy (and seed the demo data), and serve with gunicorn on a free
    loopback port; yields the port."""
    data_dir = tempfile.mkdtemp(prefix="flowdesk-bench-")
    redis = None
    env = dict(os.environ, FLOWDESK_DATA_DIR=data_dir, SECRET_KEY="bench", LOG_LEVEL="WARNING")
    env["DATABASE_URL"] = database_url or f"sqlite:///{data_dir}/bench.db"
    if not env.get("REDIS_URL"):
        redis = EmbeddedRedis(data_dir, name="bench-redis")
        env["REDIS_URL"] = redis.start()
    port = _free_port()
    server = None
    try:
        _cli(env, "db", "upgrade")
        _cli(env, "create-user", "bench", "--role", "designer", "--password", PASSWORD)
        _cli(env, "deploy")
        if seed:
            _cli(env, "seed")
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(web_workers), "-k", "gthread", "--threads", str(threads),
             "-b", f"127.0.0.1:{port}", "--log-level", "warning", "server.app:create_app()"],
            env=env, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status in (200, 503):
                    break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        if redis is not None:
            redis.stop()


def _call(conn: http.client.HTTPConnection, path: str, body: dict, token: str) -> dict:
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    if response.status >= 300:
        raise RuntimeError(f"{path} -> {response.status}: {payload}")
    return payload


def drive(port: int, clients: int, seconds: float, warmup: float = 2.0) -> dict:
    """Run ``clients`` threads doing start → complete cycles; return throughput and latencies."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    token = _call(conn, "/api/v1/auth/token", {"username": "bench", "password": PASSWORD}, "")["access_token"]
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        try:
            while (now := time.perf_counter()) < stop_at:
                detail = _call(conn, "/api/v1/processes/reference_cycle/instances", {"data": {}}, token)
                task_id = detail["tasks"][0]["id"]
                done = _call(conn, f"/api/v1/tasks/{task_id}/complete",
                             {"data": {"approved": True}, "version": detail["instance"]["version"]}, token)
                assert done["instance"]["status"] == "completed"
                if now >= start_at:
                    mine.append(time.perf_counter() - now)
        except Exception as err:  # noqa: BLE001 - report, do not hang
            errors.append(str(err)[:200])
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + warmup + 60)
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, e.g. {errors[0]}")
    latencies.sort()
    return {
        "cycles_per_second": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else None,
        "cycles": len(latencies),
    }


def run(lanes: list[str], clients: list[int], seconds: float, web_workers: int, threads: int) -> list[dict]:
    """Run every lane; print and return the rows."""
    rows = []
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; command: {' '.join(sys.argv)}")
    for lane in lanes:
        pg = None
        try:
            url = None
            if lane == "postgresql":
                url = os.environ.get("DATABASE_URL")
                if not url:
                    pg = ThrowawayPostgres()
                    url = pg.start()
            with running_server(url, web_workers, threads) as port:
                for count in clients:
                    baseline = spiff_cycles_per_second(min(seconds, 5.0))
                    figures = drive(port, count, seconds)
                    ratio = figures["cycles_per_second"] / baseline
                    row = {"lane": lane, "clients": count, "web_workers": web_workers, "threads": threads,
                           "baseline_cycles_per_second": round(baseline, 1), **{
                               k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()},
                           "ratio": round(ratio, 3), "target": TARGETS[lane]}
                    rows.append(row)
                    verdict = "meets" if ratio >= TARGETS[lane] else "MISSES"
                    print(f"{lane:<10} clients={count:<3} in-process {baseline:7.1f}/s  http "
                          f"{figures['cycles_per_second']:7.1f}/s  p50 {figures['p50_ms']:.1f} ms  "
                          f"p99 {figures['p99_ms']:.1f} ms  ratio {ratio:.3f} ({verdict} target {TARGETS[lane]})",
                          flush=True)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"{lane}: skipped — {err}")
        finally:
            if pg is not None:
                pg.stop()
    return rows
