"""Giving jobs an application context, whether run by a worker process or
drained in-process by a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, has_app_context

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
    global _worker_app
    if _worker_app is None:
        from ..app import create_app

        _worker_app = create_app()
    with _worker_app.app_context():
        try:
            yield
        finally:
            from ..extensions import db

            db.session.remove()
