"""The app's commands (``python -m server.cli <command>``, see ``server/cli.py``), registered on
``app.cli`` by ``create_app``: deploy, validate, seed, worker, poll-timers, create-user and run —
each a thin entry point over the same services as HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .config import web_threads, web_workers
from .db import transaction


def register_commands(app: Flask) -> None:
    """Attach our commands to the app's CLI."""
    for command in (deploy_cmd, validate_cmd, seed_cmd, worker_cmd, poll_cmd, create_user_cmd, run_cmd):
        app.cli.add_command(command)


@click.command("deploy")
@click.option("--dir", "folder", default=None, help="folder of .bpmn/.dmn files (default: workflows/)")
@with_appcontext
def deploy_cmd(folder):
    """Validate and deploy the workflows folder (unchanged processes keep their version)."""
    from .engine import BpmnValidationError
    from .processes.deploy import deploy_directory

    try:
        with transaction():
            results = deploy_directory(folder)
    except BpmnValidationError as err:
        raise click.ClickException(json.dumps(err.to_dict())) from None
    for r in results:
        click.echo(f"{r['process_key']}: v{r['version']}" + (" (new)" if r["created"] else " (unchanged)"))


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def validate_cmd(paths):
    """Validate BPMN/DMN files together as one bundle."""
    from .engine import BpmnValidationError
    from .processes.deploy import read_bundle_dir, validate_bundle

    files = {Path(p).name: Path(p).read_bytes() for p in paths} or read_bundle_dir(
        current_app.config["WORKFLOWS_DIR"])
    try:
        bundle = validate_bundle(files)
    except BpmnValidationError as err:
        raise click.ClickException(json.dumps(err.to_dict())) from None
    for p in bundle.processes:
        click.echo(f"ok {p.file_name}: {p.process_id}")


@click.command("seed")
@with_appcontext
def seed_cmd():
    """Load demo data from seeds/ (idempotent)."""
    from .seeding import load_seeds

    with transaction():
        summary = load_seeds()
    click.echo(json.dumps(summary))


@click.command("worker")
@click.option("--burst", is_flag=True, help="stop when the queues are empty")
@click.option("--name", default=None)
@with_appcontext
def worker_cmd(burst, name):
    """Run an RQ worker (with RQ's scheduler) on every Flowdesk queue."""
    from .jobs.worker import run_worker

    run_worker(current_app._get_current_object(), burst=burst, name=name)


@click.command("poll-timers")
@click.option("--once", is_flag=True)
@click.option("--interval", type=float, default=None)
@with_appcontext
def poll_cmd(once, interval):
    """Hand due timers to RQ (forever, or once)."""
    from .jobs.poller import run_poller

    run_poller(interval, 1 if once else None)


@click.command("create-user")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--email", default=None)
@with_appcontext
def create_user_cmd(username, roles, password, email):
    """Create a user with one or more roles."""
    from .auth.services import create_user

    with transaction():
        user = create_user(username, password, list(roles), email=email)
    click.echo(f"created {user.username} ({', '.join(user.roles)})")


def _wait_until_serving(host: str, port: int, web: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the web server accepts connections (so the printed URL works at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and web.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)


def gunicorn_command(host: str, port: int, web_workers: int, threads: int | None = None,
                     python: str = sys.executable) -> list[str]:
    """The web server's command line as ``run`` starts it (the benchmarks start the same one): the
    settings of ``server/gunicorn_conf.py``, with the address and process count given here."""
    return [python, "-m", "gunicorn", "-c", "python:server.gunicorn_conf", "-w", str(web_workers), "--threads",
            str(threads or web_threads()), "-b", f"{host}:{port}", "server.app:create_app()"]


def _child(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, start_new_session=True)


@click.command("run")
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", 5000)))
@click.option("--host", default=lambda: os.environ.get("HOST", "127.0.0.1"))
@click.option("--web-workers", type=int, default=web_workers)
@with_appcontext
def run_cmd(port, host, web_workers):
    """Set up and run the whole product on this machine until Ctrl-C."""
    from flask_migrate import upgrade

    from .aftersales.seeding import demo_report_link
    from .jobs.redis_server import EmbeddedRedis
    from .processes.deploy import deploy_directory
    from .seeding import demo_logins, load_seeds

    env = dict(os.environ)
    # Metrics of all web and worker processes are merged through files here (cleared at each start).
    metrics_dir = Path(current_app.config["DATA_DIR"]) / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    embedded = None
    if not current_app.config.get("REDIS_URL"):
        embedded = EmbeddedRedis(current_app.config["DATA_DIR"])
        env["REDIS_URL"] = embedded.start()
        click.echo(f"embedded redis-server: {env['REDIS_URL']}")
    upgrade()
    with transaction():
        for r in deploy_directory():
            click.echo(f"deployed {r['process_key']} v{r['version']}" + ("" if r["created"] else " (unchanged)"))
    with transaction():
        load_seeds()
    report_link = demo_report_link()
    python = sys.executable
    children = {
        "web": _child(gunicorn_command(host, port, web_workers, python=python), env),
        "worker": _child([python, "-m", "server.cli", "worker"], env),
        "poller": _child([python, "-m", "server.cli", "poll-timers"], env),
    }
    _wait_until_serving(host, port, children["web"])
    click.echo(f"\nFlowdesk is running on http://{host}:{port}  (Ctrl-C to stop)\nDemo logins:")
    for login in demo_logins():
        click.echo(f"  {login['username']:<14} {login['password']:<16} {', '.join(login['roles'])}")
    if report_link:
        click.echo("\nTry the customer's QR link (report a fault on a demo machine):\n"
                   f"  http://{host}:{port}{report_link}")

    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    click.echo(f"{name} exited with code {proc.returncode}; stopping", err=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in children.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if embedded is not None:
            embedded.stop()
        click.echo("stopped")

