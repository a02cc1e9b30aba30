"""Giving jobs an application context, whether run by a worker process or
drained in-process by a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, has_app_context

from ..extensions import db

_worker_app: Flask | None = None


def set_worker_app(app: Flask) -> None:
    """Called once by the worker bootstrap."""
    global _worker_app
    _worker_app = app


@contextmanager
def job_context() -> Iterator[None]:
    """Use the current app context if there is one (tests), else the worker's app."""
    if has_app_context():
        yield
        return
    if _worker_app is None:
        # The worker bootstrap (``python -m server.cli worker``) hands over its app; this module does not
        # build one, so jobs never depend on the composition root.
        raise RuntimeError("no application for this job: run workers with `python -m server.cli worker`")
    with _worker_app.app_context():
        try:
            yield
        finally:
            db.session.remove()
