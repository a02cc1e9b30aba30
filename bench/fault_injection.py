"""Fault injection: ``python3 -m server fault-injection`` (or ``.venv/bin/python -m bench.fault_injection``).

Starts, on loopback, the multi-machine layout of docs/deploy.md — a throwaway PostgreSQL (port 57150), a
Redis server (57160), two "machines" each with a gunicorn web process (57101, 57102; server/gunicorn_conf.py),
RQ workers (2 + 1) and a timer poller — migrates, deploys workflows/ and seeds the demo data. Then it
drives service requests through to their end over HTTP (see bench/fault_driver.py), and halfway through
the intake it ``kill -9``s an RQ worker in the middle of a job and, 20 s later (once that job's timer
is due for redelivery), restarts Redis empty (FLUSHALL, shutdown, start).
Finally it checks the database (bench/fault_checks.py) and prints PASS or FAIL with counts and timings.

Timers fire within seconds through configuration only: the deployed bundle is workflows/ with the two
decision tables replaced by the copies in bench/fault_workflows/ (second-long SLA targets, offer,
escalation and rating windows), and the engineers' shift hours are read in a time zone where it is
mid-morning now (FLOWDESK_TIMEZONE), so the same share of the seeded engineers is on shift whenever
the run starts."""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import redis
from rq import Worker

from .cluster import ROOT, LocalCluster
from .fault_checks import check
from .fault_driver import Driver, Http

POLL_SECONDS, REDELIVER_SECONDS = 0.5, 15


def bench_workflows(folder: Path) -> Path:
    """workflows/ with the fault-injection copies of the decision tables in place of the real ones."""
    target = folder / "workflows"
    shutil.copytree(ROOT / "workflows", target)
    for table in (Path(__file__).parent / "fault_workflows").glob("*.dmn"):
        shutil.copy(table, target / table.name)
    return target


def mid_morning_zone(now: datetime) -> str:
    """An Etc/GMT zone in which it is 10 o'clock now (Etc/GMT-3 is three hours ahead of UTC)."""
    offset = (10 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def demo_passwords() -> dict[str, str]:
    """Usernames and passwords of the seeded users (seeds/users.json and the engineers of service.json)."""
    users = {u["username"]: u["password"] for u in json.loads((ROOT / "seeds" / "users.json").read_text())}
    engineers = json.loads((ROOT / "seeds" / "service.json").read_text())["engineers"]
    for n in range(engineers["count"]):
        users[f"{engineers['username_prefix']}{n + 1:02d}"] = engineers["password"]
    return users


class FaultRun:
    """One run: the cluster, the driver, the faults and the clock readings for the summary."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="flowdesk-fault-"))
        self.zone = mid_morning_zone(datetime.now(UTC))
        env = {"SECRET_KEY": "fault-injection-shared-secret", "LOG_LEVEL": "WARNING",
               "FLOWDESK_WORKFLOWS_DIR": str(bench_workflows(self.folder)), "FLOWDESK_TIMEZONE": self.zone,
               "FLOWDESK_TIMER_POLL_SECONDS": str(POLL_SECONDS),
               "FLOWDESK_TIMER_REDELIVER_SECONDS": str(REDELIVER_SECONDS),
               "FLOWDESK_RATE_QR_RATING": "1000000"}  # every customer rates from the same loopback address
        self.cluster = LocalCluster(self.folder, pg_port=57150, redis_port=57160, web_ports=[57101, 57102],
                                    workers=[2, 1], web_concurrency=args.web_concurrency, env=env)
        self.marks: dict[str, float] = {"start": time.monotonic()}
        self.faults: list[str] = []

    def mark(self, name: str) -> None:
        """Remember when something happened."""
        self.marks[name] = time.monotonic()

    def since(self, name: str, until: str | None = None) -> float:
        """Seconds from one mark to another (or to now)."""
        return self.marks.get(until, time.monotonic()) - self.marks[name]

    def set_up(self) -> Driver:
        """Services, schema, workflows, seed data, the machines' processes, everyone logged in."""
        self.cluster.start_services()
        self.mark("services")
        for command in (("db", "upgrade"), ("deploy",), ("seed",)):
            self.cluster.cli(*command)
        self.mark("migrated, deployed, seeded")
        self.cluster.start_machines()
        self.mark("machines")
        driver = Driver(Http([m.port for m in self.cluster.machines]), demo_passwords())
        driver.log_in()
        self.mark("ready")
        return driver

    def setup_steps(self) -> str:
        """How long each set-up step took."""
        steps, previous = [], "start"
        for name in ("services", "migrated, deployed, seeded", "machines", "ready"):
            steps.append(f"{name if name != 'ready' else 'logins'} {self.since(previous, name):.1f} s")
            previous = name
        return "; ".join(steps)

    def health(self, driver: Driver) -> list[str]:
        """GET /api/v1/health on every web process (what a load balancer and the monitoring see)."""
        answers = []
        for machine in self.cluster.machines:
            conn = http.client.HTTPConnection("127.0.0.1", machine.port, timeout=30)
            conn.request("GET", "/api/v1/health")
            answers.append(f":{machine.port} {conn.getresponse().read().decode()}")
        return answers

    def inject_faults(self) -> None:
        """kill -9 a worker in the middle of a job (the busiest moment within 5 s); once the killed job's
        hand-over claim has expired (so its redelivery is seen on its own), FLUSHALL and restart Redis."""
        self.mark("faults")
        connection = redis.Redis.from_url(self.cluster.redis.url)
        pids = self.cluster.worker_pids()
        victim, job = next(iter(pids)), None
        deadline = time.monotonic() + 5
        while job is None and time.monotonic() < deadline:
            for worker in Worker.all(connection=connection):
                label = next((k for k, pid in pids.items() if pid == worker.pid), None)
                if label and worker.get_state() == "busy" and worker.get_current_job_id():
                    victim, job = label, worker.get_current_job_id()
                    break
            else:
                time.sleep(0.02)
        pid = self.cluster.kill_worker(victim)
        self.faults.append(f"t+{self.since('intake'):.1f}s kill -9 worker {victim} (pid {pid}) "
                           + (f"in the middle of job {job}" if job else "while idle") + "; it stays dead")
        time.sleep(REDELIVER_SECONDS + 5)
        self.cluster.redis.flush_and_stop()
        self.mark("redis down")
        time.sleep(self.args.redis_down_seconds)
        self.cluster.redis.start()
        self.faults.append(f"t+{self.since('intake', 'redis down'):.1f}s Redis FLUSHALL + shutdown, restarted empty "
                           f"after {self.since('redis down'):.1f}s")

    def drive(self, driver: Driver) -> bool:
        """Open the requests at the chosen rate (faults halfway), act until every process ended; False on
        the deadline."""
        assets = [a["id"] for a in driver.http.call("GET", "/api/v1/assets", token=driver.tokens["dispatcher"])[1]]
        total, rate = self.args.requests, self.args.rate
        self.mark("intake")
        done = threading.Event()

        def intake():
            with ThreadPoolExecutor(max_workers=8, thread_name_prefix="intake") as pool:
                for n in range(total):
                    time.sleep(max(0.0, self.marks["intake"] + n / rate - time.monotonic()))
                    pool.submit(driver.open_request, n, assets[n % len(assets)])
                    if n == total // 2:
                        threading.Thread(target=self.inject_faults, daemon=True).start()
            self.mark("intake done")
            done.set()

        threading.Thread(target=intake, daemon=True).start()
        deadline = time.monotonic() + self.args.deadline
        last_report = 0.0
        while time.monotonic() < deadline:
            counts = driver.tick()
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print(f"  t+{self.since('intake'):5.0f}s opened {len(driver.requests)}/{total}, open {counts['open']}, "
                      f"reviews {counts['reviews']}, manual {counts['manual']}, HTTP calls {driver.http.count}",
                      flush=True)
            if done.is_set() and not any(counts.values()) and driver.running_instances() == 0:
                self.mark("all ended")
                return True
            time.sleep(0.5)
        return False


def summary(run: FaultRun, driver: Driver, ended: bool, findings) -> bool:
    """Print the PASS/FAIL report; True when everything passed."""
    http = driver.http
    failures = list(findings.failures)
    if not ended:
        failures.insert(0, f"not every process ended within {run.args.deadline:g} s")
    if http.server_errors:
        failures.append(f"5xx responses: {len(http.server_errors)} (e.g. {'; '.join(http.server_errors[:3])})")
    if http.transport_errors:
        failures.append(f"requests that failed in transport: {len(http.transport_errors)} "
                        f"(e.g. {'; '.join(http.transport_errors[:3])})")
    if driver.unexpected:
        failures.append(f"unexpected answers: {len(driver.unexpected)} (e.g. {'; '.join(driver.unexpected[:3])})")
    intake = run.since("intake", "intake done")
    print("\n== fault injection: summary")
    print(f"layout        2 machines × (gunicorn {run.args.web_concurrency} processes), RQ workers 2 + 1, "
          "2 timer pollers, PostgreSQL :57150, Redis :57160")
    print(f"requests      {len(driver.requests)} opened in {intake:.1f} s ({len(driver.requests) / intake:.1f}/s); "
          f"{findings.numbers.get('plans', '')}")
    print(f"set-up        {run.setup_steps()}")
    for line in run.faults:
        print(f"fault         {line}")
    for name, value in findings.numbers.items():
        if name != "plans":
            print(f"{name:<13} {value}")
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(http.statuses.items()))
    print(f"HTTP          {http.count} calls ({statuses}); 5xx {len(http.server_errors)}, "
          f"transport failures {len(http.transport_errors)}")
    print(f"actions       {', '.join(f'{k} ×{n}' for k, n in sorted(driver.actions.items()))}")
    ends = f"{run.since('intake', 'all ended'):.1f} s" if "all ended" in run.marks else "never"
    print(f"timings       set-up {run.since('start', 'ready'):.1f} s, intake {intake:.1f} s, first request → all "
          f"ended {ends}, checks {run.since('checks'):.1f} s, total {run.since('start'):.1f} s")
    for line in run.healths:
        print(f"health        {line.strip()}")
    for failure in failures:
        print(f"FAIL          {failure}")
    print("RESULT        " + ("PASS" if not failures else f"FAIL ({len(failures)} checks)"))
    return not failures


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, check, report; exit status 0 on PASS."""
    parser = argparse.ArgumentParser(prog="python3 -m server fault-injection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="service requests to drive (default 500)")
    parser.add_argument("--rate", type=float, default=5.0, help="requests opened per second (default 5)")
    parser.add_argument("--web-concurrency", type=int, default=2, help="gunicorn processes per machine (default 2)")
    parser.add_argument("--redis-down-seconds", type=float, default=2.0, help="how long Redis stays down")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds allowed for every request to end")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder (kept anyway on FAIL)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop every started process on kill/timeout too
    run = FaultRun(args)
    print(f"fault injection: {args.requests} requests, logs in {run.folder}, shift hours read in {run.zone}",
          flush=True)
    driver, passed = None, False
    try:
        driver = run.set_up()
        print(f"  set up in {run.since('start', 'ready'):.1f} s; driving", flush=True)
        ended = run.drive(driver)
        driver.close()
        run.mark("checks")
        run.healths = run.health(driver)
        findings = check(run.cluster.database_url, driver.requests, POLL_SECONDS + REDELIVER_SECONDS + 15)
        passed = summary(run, driver, ended, findings)
    finally:
        if driver is not None:
            driver.close()
        run.cluster.stop(keep_files=args.keep or not passed)
        if not passed:
            print(f"logs kept in {run.folder}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
