"""What every browser page shares, wired into the app: the layout with navigation by role, the
language (English or Simplified Chinese through Flask-Babel, from the user's profile, the session or
the browser), CSRF on every signed-in form, and the shared pages (``pages.py``); the helpers they
use are in ``layout.py``."""

from __future__ import annotations

from flask import Flask, request
from flask_babel import Babel, get_locale

from ..auth.access import ACCESS_ATTR
from ..auth.routes import require_csrf
from ..extensions import csrf
from . import pages
from .layout import LANGUAGES, TRANSLATIONS, compile_translations, nav_links, select_locale


def init_web(app: Flask) -> None:
    """Wire the language, templates' helpers, the CSRF check and the shared pages into ``app``."""
    compile_translations()
    Babel(app, locale_selector=select_locale, default_translation_directories=str(TRANSLATIONS))
    csrf.init_app(app)  # Flask-WTF: makes and checks the tokens (templates' csrf_token()); we say which requests
    app.jinja_env.globals.update(languages=LANGUAGES, nav_links=nav_links, get_locale=get_locale)
    app.jinja_env.add_extension("jinja2.ext.do")

    @app.before_request
    def _check_csrf():
        # Every signed-in form post must carry the session's token; API calls use bearer tokens
        # (no cookies, so no cross-site forgery), public QR pages carry a signed link instead.
        if request.method != "POST" or request.path.startswith("/api/") or request.endpoint is None:
            return None
        view = app.view_functions.get(request.endpoint)
        if getattr(view, ACCESS_ATTR, None) != "public":
            require_csrf()
        return None

    app.register_blueprint(pages.web)
