"""What the benchmarks share: loopback ports in the bench range, a lane's database (a SQLite file or
a throwaway PostgreSQL), a production-style server (freshly migrated, embedded Redis, gunicorn started
as ``run`` starts it), JSON calls over keep-alive connections, and a closed-loop load generator (asyncio
clients on aiohttp, one connection each, in one process)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from server.jobs.redis_server import EmbeddedRedis

from .pg import ThrowawayPostgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench-password-1"
# Anything the benchmarks listen on stays in 56100-56199 (the PostgreSQL cluster takes 56150), so runs
# beside other engineers' servers and benchmarks on the same machine do not collide.
PORTS = range(56100, 56150)


def free_port() -> int:
    """The first loopback port of the bench range nobody listens on."""
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def machine_line() -> str:
    """Cores, Python and the command, printed at the top of every benchmark."""
    code = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return (f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {load_average()}; "
            f"code: {code.stdout.strip() or '?'}; command: {' '.join(sys.argv)}")


def load_average() -> float:
    """The machine's 1-minute load average (other work shares these cores; kept with every row)."""
    return round(os.getloadavg()[0], 2)


@contextmanager
def lane_database(lane: str, data_dir: str) -> Iterator[str]:
    """The database URL of a lane: a SQLite file in ``data_dir``, ``DATABASE_URL`` when it names a
    PostgreSQL server, else a throwaway PostgreSQL cluster removed afterwards."""
    if lane == "sqlite":
        yield f"sqlite:///{data_dir}/bench.db"
        return
    if lane != "postgresql":
        raise ValueError(f"unknown lane {lane!r} (sqlite or postgresql)")
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        yield os.environ["DATABASE_URL"]
        return
    pg = ThrowawayPostgres()
    try:
        yield pg.start()
    finally:
        pg.stop()


def cli(env: dict, *args: str) -> None:
    """Run one ``server.cli`` command with ``env``; quiet unless it fails (then its output is in the error)."""
    done = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"server.cli {' '.join(args)} failed: {(done.stdout + done.stderr)[-2000:]}")


@contextmanager
def server_env(lane: str) -> Iterator[dict]:
    """A fresh data dir, the lane's database migrated, an embedded Redis (unless ``REDIS_URL`` is set):
    yields the environment every server process of the run gets; the data dir is removed afterwards."""
    data_dir = tempfile.mkdtemp(prefix="flowdesk-bench-")
    metrics = Path(data_dir) / "metrics"
    metrics.mkdir()
    redis = None
    try:
        with lane_database(lane, data_dir) as url:
            env = dict(os.environ, FLOWDESK_DATA_DIR=data_dir, SECRET_KEY="bench", LOG_LEVEL="WARNING",
                       DATABASE_URL=url, PROMETHEUS_MULTIPROC_DIR=str(metrics),
                       GUNICORN_CMD_ARGS="--log-level warning")
            try:
                if not env.get("REDIS_URL"):
                    redis = EmbeddedRedis(data_dir, name="bench-redis")
                    env["REDIS_URL"] = redis.start()
                cli(env, "db", "upgrade")
                yield env
            finally:
                if redis is not None:
                    redis.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_until_serving(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until ``GET /api/v1/health`` answers on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status in (200, 503):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer on port {port} within {timeout:g} s")


@contextmanager
def running_server(lane: str, web_workers: int, threads: int, seed: bool = False) -> Iterator[tuple[int, int]]:
    """Migrate, create the ``bench`` designer, deploy workflows/ (and seed the demo data), then serve with
    gunicorn as ``run`` starts it (``server.commands.gunicorn_command``) on a bench port; yields the port and
    the gunicorn master's process id."""
    from server.commands import gunicorn_command

    with server_env(lane) as env:
        cli(env, "create-user", "bench", "--role", "designer", "--password", PASSWORD)
        cli(env, "deploy")
        if seed:
            cli(env, "seed")
        port = free_port()
        server = subprocess.Popen(gunicorn_command("127.0.0.1", port, web_workers, threads), env=env, cwd=ROOT,
                                  start_new_session=True, stdout=subprocess.DEVNULL)
        try:
            wait_until_serving(port, server)
            yield port, server.pid
        finally:
            server.terminate()
            server.wait(timeout=30)


async def call(session: aiohttp.ClientSession, method: str, path: str, token: str = "",
               body: dict | None = None) -> dict | list | None:
    """One JSON request on the session's keep-alive connection; raises on any answer ≥ 300."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, path, json=body, headers=headers) as response:
        payload = json.loads(await response.read() or b"null")
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} -> {response.status}: {str(payload)[:300]}")
        return payload


def connect(port: int) -> aiohttp.ClientSession:
    """A client of the bench server holding one keep-alive connection (use it in ``async with``)."""
    return aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=aiohttp.TCPConnector(limit=1),
                                 timeout=aiohttp.ClientTimeout(total=60))


async def log_in(port: int, username: str, password: str) -> str:
    """An access token for a user."""
    async with connect(port) as session:
        answer = await call(session, "POST", "/api/v1/auth/token", body={"username": username, "password": password})
    return answer["access_token"]


def percentile(ordered: list[float], share: float) -> float:
    """The value below which ``share`` of the sorted values fall (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * share + 0.999999) - 1))]


Step = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


async def closed_loop(port: int, clients: int, seconds: float, step: Step, warmup: float = 1.0) -> dict:
    """``clients`` asyncio clients, each on its own keep-alive connection, awaiting ``step(session,
    client_index)`` back to back (a client sends its next request when the last one is answered). Steps
    that begin inside the measured window count; a step returning False means that client ran out of work.
    Returns throughput, p50 / p99 / max latency of one step, and how many steps were measured."""
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    latencies: list[float] = []
    last_end: list[float] = []

    async def client(index: int) -> None:
        end = start_at
        async with connect(port) as session:
            while (begun := time.perf_counter()) < stop_at:
                if not await step(session, index):
                    break
                if begun >= start_at:
                    end = time.perf_counter()
                    latencies.append(end - begun)
        last_end.append(end)

    outcomes = await asyncio.gather(*(client(n) for n in range(clients)), return_exceptions=True)
    errors = [repr(err)[:300] for err in outcomes if isinstance(err, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, e.g. {errors[0]}")
    if not latencies:
        raise RuntimeError("no step finished inside the measured window")
    # A window cut short (out of work) is measured until its last answer, not its planned end.
    elapsed = max(1e-3, min(stop_at, max(last_end)) - start_at)
    latencies.sort()
    return {"per_second": round(len(latencies) / elapsed, 1), "calls": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1), "max_ms": round(latencies[-1] * 1000, 1)}
