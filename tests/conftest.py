"""Test fixtures: a real database (SQLite file, or PostgreSQL when DATABASE_URL
is set), a real redis-server (REDIS_URL, or an embedded one), the schema built
by the Alembic migrations, and factories for users and deployed processes.
Nothing of ours is mocked; the clock is moved with time-machine."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from rq import SimpleWorker

from server.app import create_app
from server.db import transaction
from server.extensions import db
from server.jobs.queues import ALL_QUEUES, get_queue, get_redis
from server.jobs.redis_server import EmbeddedRedis

pytest_plugins = ["tests.aftersales_world"]

ROOT = Path(__file__).resolve().parent.parent
TEST_BPMN = Path(__file__).parent / "bpmn"


def inline_model(process_id: str, body: str) -> str:
    """A one-process BPMN file around ``body`` (the process's elements, indented as they come)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions xmlns:bpmn='
            '"http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://x">\n'
            f'  <bpmn:process id="{process_id}" isExecutable="true">\n{body}\n  </bpmn:process>\n</bpmn:definitions>')


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis: REDIS_URL if given, else an embedded redis-server for the session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedRedis(tempfile.mkdtemp(prefix="flowdesk-test-redis-"), name="test-redis")
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def app(redis_url, tmp_path_factory):
    """One app for the session, its schema created by running the migrations."""
    data_dir = tmp_path_factory.mktemp("data")
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'test.db'}"
    os.environ["FLOWDESK_DATA_DIR"] = str(data_dir)
    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": _normalise(database_url),
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret",
        "ENGINE_TIME_LIMIT": 5.0,
        "SCRIPT_TIME_LIMIT": 1.0,
        "ENGINE_STEP_LIMIT": 500,
    })
    with app.app_context():
        from flask_migrate import downgrade, upgrade

        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            downgrade(revision="base")  # a reused throwaway cluster: start from nothing
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _normalise(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every test starts with empty tables and an empty Redis."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    with app.app_context():
        get_redis().flushdb()
        tables = list(reversed(db.metadata.sorted_tables))
        with db.engine.begin() as conn:
            for table in tables:
                conn.execute(table.delete())
        app.extensions.pop("flowdesk_engine", None)
        app.extensions.pop("flowdesk_version_cache", None)
    yield


@pytest.fixture
def ctx(app):
    """An application context for calling services directly."""
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    """A test client."""
    return app.test_client()


@pytest.fixture
def make_user(app):
    """Factory: create a user with roles and return (user_id, auth headers)."""
    from server.auth.services import create_user, issue_tokens

    counter = {"n": 0}

    def make(*roles: str, username: str | None = None):
        counter["n"] += 1
        name = username or f"{'_'.join(roles) or 'user'}{counter['n']}"
        with app.app_context():
            with transaction():
                user = create_user(name, "password-123", list(roles))
                tokens = issue_tokens(user, "pytest")
            user_id = user.id
            db.session.remove()
        return user_id, {"Authorization": f"Bearer {tokens['access_token']}", "User-Agent": "pytest"}

    return make


@pytest.fixture
def designer(make_user):
    """Auth headers of a designer."""
    return make_user("designer")[1]


@pytest.fixture
def deploy(client, designer):
    """Factory: deploy files (names under tests/bpmn or workflows/, or name → XML text) through the API."""

    def deploy_files(*names: str, files: dict[str, str] | None = None, expect: int = 201,
                     make_executable: bool | None = None, encoding: str | None = None):
        """``encoding``: upload as multipart bytes in that encoding (else JSON text)."""
        body = dict(files or {})
        for name in names:
            path = TEST_BPMN / name if (TEST_BPMN / name).exists() else ROOT / "workflows" / name
            body[path.name] = path.read_text()
        if encoding is not None:
            form = {"files": [(io.BytesIO(text.encode(encoding)), name) for name, text in body.items()]}
            if make_executable is not None:
                form["make_executable"] = "true" if make_executable else "false"
            response = client.post("/api/v1/processes", data=form, content_type="multipart/form-data",
                                   headers=designer)
        else:
            extra = {} if make_executable is None else {"make_executable": make_executable}
            response = client.post("/api/v1/processes", json={"files": body, **extra}, headers=designer)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    return deploy_files


@pytest.fixture
def start(client, designer):
    """Factory: start an instance through the API and return its detail."""

    def start_instance(process_key: str, data: dict | None = None, expect: int = 201, **extra):
        response = client.post(f"/api/v1/processes/{process_key}/instances",
                               json={"data": data or {}, **extra}, headers=designer)
        assert response.status_code == expect, response.get_json()
        return response.get_json()

    return start_instance


@pytest.fixture
def run_worker(app):
    """Drain the RQ queues in-process with a real worker (burst mode)."""

    def drain():
        with app.app_context():
            conn = get_redis()
            queues = [get_queue(name) for name in ALL_QUEUES]
            SimpleWorker(queues, connection=conn).work(burst=True, with_scheduler=False)
            db.session.remove()

    return drain


@pytest.fixture
def poll_timers(app):
    """Run one round of the timer poller; returns how many timers it enqueued."""
    from server.jobs.poller import enqueue_due_timers

    def poll():
        with app.app_context():
            count = enqueue_due_timers()
            db.session.remove()
            return count

    return poll


@pytest.fixture
def redis_conn(redis_url):
    """A raw client on the test Redis."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def serve(app, redis_url, tmp_path):
    """Factory: start the production web server (gunicorn with ``server/gunicorn_conf.py``, one process) on
    the test database and Redis; returns its port once it answers. Stopped after the test."""
    servers = []

    def start(**env_overrides: str) -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": redis_url,
               "SECRET_KEY": app.config["SECRET_KEY"], "FLOWDESK_DATA_DIR": str(tmp_path), **env_overrides}
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:server.gunicorn_conf", "-w", "1",
                                   "-b", f"127.0.0.1:{port}", "--control-socket", str(tmp_path / f"{port}.ctl"),
                                   "server.app:create_app()"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        servers.append(server)
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).close()
                return port
            except urllib.error.HTTPError:
                return port  # it answers (a 503 while a worker is missing is an answer)
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"gunicorn did not answer on port {port}")

    yield start
    for server in servers:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=30)
        if server.poll() is None:
            server.kill()
            server.wait()
