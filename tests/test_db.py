"""The unit of work: one commit at the edge, after-commit hooks, UTC datetimes."""

from __future__ import annotations

from datetime import datetime

import pytest

from server.auth.models import User
from server.db import after_commit, transaction
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
