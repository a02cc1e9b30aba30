"""The unit of work: one commit at the edge, after-commit hooks, UTC datetimes."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from server.auth.models import User
from server.db import after_commit, is_concurrency_failure, transaction
from server.extensions import db


def test_after_commit_hooks_run_only_when_the_transaction_commits(ctx):
    ran = []
    with transaction():
        after_commit(lambda: ran.append("committed"))
    with pytest.raises(RuntimeError), transaction():
        after_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("boom")
    assert ran == ["committed"]


def test_a_failed_unit_of_work_writes_nothing(ctx):
    with pytest.raises(RuntimeError), transaction():
        db.session.add(User(username="ghost", password_hash="x", roles=[]))
        db.session.flush()
        raise RuntimeError("boom")
    assert db.session.query(User).filter_by(username="ghost").count() == 0


def test_naive_datetimes_are_refused_and_stored_ones_come_back_as_utc(ctx):
    with pytest.raises(Exception, match="naive"), transaction():
        db.session.add(User(username="naive", password_hash="x", roles=[], created_at=datetime(2026, 1, 1)))
    with transaction():
        db.session.add(User(username="aware", password_hash="x", roles=[]))
    db.session.expire_all()
    created = db.session.query(User).filter_by(username="aware").one().created_at
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0


def test_a_postgresql_deadlock_is_recognised_as_a_lost_race(app, make_user):
    # The handler turns it into a 409 and the timer job into "conflict" (delivered again), never a 500.
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("SQLite serialises writers: no deadlocks")
    first, second = make_user("designer")[0], make_user("designer")[0]
    barrier, errors = threading.Barrier(2), []

    def writer(one, other):
        with app.app_context(), db.engine.connect() as conn, conn.begin():
            conn.execute(text("UPDATE users SET full_name = 'x' WHERE id = :id"), {"id": one})
            barrier.wait()
            try:
                conn.execute(text("UPDATE users SET full_name = 'y' WHERE id = :id"), {"id": other})
            except OperationalError as err:
                errors.append(err)

    threads = [threading.Thread(target=writer, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 1 and is_concurrency_failure(errors[0])
    assert not is_concurrency_failure(OperationalError("SELECT 1", {}, Exception("connection refused")))
