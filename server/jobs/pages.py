"""RQ monitoring for admins (what rq-dashboard shows, inside our login and roles): each queue's depth,
started / scheduled / failed counts, the workers with their state and current job, and the failed jobs
with their error's last line — which an admin may requeue or delete. At ``/admin/queues``, and at
``/admin/rq`` where rq-dashboard would live: rq-dashboard itself is not mounted, as its pages run inline
scripts (our Content-Security-Policy allows none) and its requeue/delete/empty posts carry no CSRF token."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from rq import Worker
from rq.job import Job

from ..auth.access import roles_required
from ..errors import NotFound, ValidationFailed
from .queues import ALL_QUEUES, get_queue, get_redis

pages = Blueprint("ops_pages", __name__, url_prefix="/admin")
FAILED_SHOWN = 50


def queue_overview() -> list[dict]:
    """Per queue: waiting, started, scheduled, failed counts and the newest failed jobs."""
    overview = []
    for name in ALL_QUEUES:
        queue = get_queue(name)
        failed_ids = queue.failed_job_registry.get_job_ids(0, FAILED_SHOWN - 1)
        failed = [job for job in Job.fetch_many(failed_ids, connection=get_redis()) if job is not None]
        overview.append({
            "name": name, "waiting": queue.count, "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count, "failed": queue.failed_job_registry.count,
            "failed_jobs": [{"id": job.id, "func": job.func_name, "args": job.args, "ended_at": job.ended_at,
                             "error": (job.exc_info or "").strip().splitlines()[-1:] or [""]} for job in failed],
        })
    return overview


def worker_overview() -> list[dict]:
    """Every worker registered in Redis: name, host, state, queues and its current job."""
    return [{"name": worker.name, "hostname": worker.hostname, "pid": worker.pid, "state": worker.get_state(),
             "queues": worker.queue_names(), "current_job": worker.get_current_job_id(),
             "last_heartbeat": worker.last_heartbeat} for worker in Worker.all(connection=get_redis())]


def act_on_failed_job(queue_name: str, job_id: str, action: str) -> None:
    """Requeue or delete a failed job."""
    if queue_name not in ALL_QUEUES or action not in ("requeue", "delete"):
        raise ValidationFailed("unknown queue or action")
    registry = get_queue(queue_name).failed_job_registry
    try:
        if action == "requeue":
            registry.requeue(job_id)
        else:
            registry.remove(Job.fetch(job_id, connection=get_redis()), delete_job=True)
    except Exception as err:  # noqa: BLE001 - RQ raises several kinds (no such job, not failed, …)
        raise NotFound(f"failed job {job_id} is not in queue '{queue_name}'") from err


@pages.route("/rq")
@pages.route("/queues")
@roles_required("admin")
def queues_page():
    """Queues, workers and failed jobs."""
    return render_template("ops/queues.html", queues=queue_overview(), workers=worker_overview())


@pages.route("/queues/<queue_name>/failed/<job_id>", methods=["POST"])
@roles_required("admin")
def failed_job_action(queue_name, job_id):
    """Requeue or delete one failed job."""
    act_on_failed_job(queue_name, job_id, request.form.get("action", ""))
    return redirect(url_for("ops_pages.queues_page", done=f"{request.form.get('action')} {job_id}"))
