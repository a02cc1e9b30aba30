"""Pages every signed-in person uses: the start page, the task inbox, any task's form (drawn
from its JSON schema), and the language choice."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for

from ..auth.access import client_label, current_principal, public, roles_required
from ..auth.routes import require_csrf
from ..db import transaction
from ..errors import AppError, NotFound
from ..processes import forms, tasks
from .forms import data_from_form, fields_of
from .layout import LANGUAGES, nav_links, problem_for_page

web = Blueprint("web", __name__)


@web.route("/")
@roles_required()
def home():
    """The start page: where this person's work is."""
    user = current_principal()
    links = nav_links(user)
    if len(links) == 2:  # one job besides the inbox: go straight to it
        return redirect(url_for(links[1][1]))
    return render_template("web/home.html", links=links, tasks=tasks.inbox(user, limit=10))


@web.route("/tasks")
@roles_required()
def task_inbox():
    """My tasks: assigned to me or open to one of my roles."""
    return render_template("web/tasks.html", tasks=tasks.inbox(current_principal(), limit=200))


def _visible_task(task_id: int):
    task = tasks.get_task(task_id)
    if not tasks.can_act_on(task, current_principal()):
        raise NotFound(f"task {task_id} does not exist")
    return task


def _schema_of(task) -> dict:
    return forms.form_validator(task.form_key).schema if task.form_key else {"properties": {}}


@web.route("/tasks/<int:task_id>", methods=["GET", "POST"])
@roles_required()
def task_page(task_id):
    """A task's form, drawn from its JSON schema; posting completes it (or claims it)."""
    task = _visible_task(task_id)
    schema, problem, values, status = _schema_of(task), None, {}, 200
    if request.method == "POST":
        values = request.form
        try:
            with transaction():
                if request.form.get("action") == "claim":
                    tasks.claim_task(task.id, current_principal(), client=client_label())
                    return redirect(url_for("web.task_page", task_id=task.id))
                tasks.complete_task(task.id, data_from_form(schema, request.form), current_principal(),
                                    expected_version=int(request.form.get("version") or 0) or None,
                                    client=client_label())
            return redirect(url_for("web.task_inbox", done=task.name))
        except AppError as err:
            problem, status = problem_for_page(err), err.status
            task = _visible_task(task_id)
    return render_template("web/task.html", task=task, schema=schema, fields=fields_of(schema), values=values,
                           data=task.instance.data or {}, problem=problem), status


@web.route("/language", methods=["POST"])
@public
def set_language():
    """Choose the page language (kept in the session, and in the profile when signed in)."""
    lang = request.form.get("lang")
    require_csrf()  # public (customers switch too), so the shared CSRF check does not cover it
    if lang in LANGUAGES:
        session["lang"] = lang
        from flask_login import current_user

        if current_user.is_authenticated:
            with transaction():
                current_user.locale = lang
    back = request.form.get("next") or "/"
    return redirect(back if back.startswith("/") and not back.startswith("//") else "/")
