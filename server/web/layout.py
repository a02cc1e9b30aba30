"""What every page's layout needs: the languages and the catalogue, the navigation by role, and
problems shown in the words the API uses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import request, session
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from ..errors import AppError

LANGUAGES = {"en": "English", "zh": "简体中文"}
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"

# (label, endpoint, roles that see it): the navigation each role gets.
NAV = (
    (_l("My tasks"), "web.task_inbox", None),
    (_l("Processes"), "designer_pages.process_list", ("designer",)),
    (_l("Instances"), "designer_pages.instance_list", ("designer",)),
    (_l("Leads"), "sales_pages.lead_list", ("sales_rep", "sales_manager", "director", "finance")),
    (_l("Pipeline"), "sales_pages.pipeline", ("sales_rep", "sales_manager", "director", "finance")),
    (_l("Funnel"), "sales_pages.funnel_page", ("sales_rep", "sales_manager", "director", "finance")),
    (_l("Approvals"), "sales_pages.approvals_page", ("sales_manager", "director", "finance")),
    (_l("Service desk"), "aftersales_pages.desk_page", ("dispatcher", "service_manager")),
    (_l("Engineers"), "aftersales_pages.engineers_page", ("dispatcher", "service_manager")),
    (_l("Service report"), "aftersales_pages.report_view", ("dispatcher", "service_manager")),
    (_l("Queues"), "ops_pages.queues_page", ("admin",)),
)


def select_locale() -> str:
    """The page language: the user's profile, else the session's choice, else the browser's."""
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale in LANGUAGES:
        return current_user.locale
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    return request.accept_languages.best_match(list(LANGUAGES), default="en")


def compile_translations(folder: Path = TRANSLATIONS) -> None:
    """Compile each ``messages.po`` to ``.mo`` when the catalogue is newer (atomic: many workers start at once)."""
    for po in folder.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source)
        handle, temporary = tempfile.mkstemp(dir=po.parent, suffix=".mo.tmp")
        with os.fdopen(handle, "wb") as target:
            write_mo(target, catalog)
        os.replace(temporary, mo)


def problem_for_page(err: AppError) -> dict:
    """A problem as pages show it: the API's title and detail, and its field errors keyed by field."""
    errors = err.extra.get("errors") or []
    return {"title": err.title, "detail": err.detail, "status": err.status, "list": errors,
            "fields": {e.get("field"): e.get("message") for e in errors if e.get("field")}}


def nav_links(user) -> list[tuple[str, str]]:
    """The navigation entries ``user`` may follow."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [(label, endpoint) for label, endpoint, roles in NAV if roles is None or user.has_role(*roles)]
