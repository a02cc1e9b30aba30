"""Flask extensions, created unbound here and bound in ``create_app`` with ``init_app``."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base for every model."""


# Objects stay readable after the one commit at the edge (no reload queries to build the response);
# each request and each job gets a fresh session, so nothing stale outlives its unit of work.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
# One per process, as Flask-Limiter intends: its Redis storage (REDIS_URL) is bound by ``init_app``.
limiter = Limiter(get_remote_address)
csrf = CSRFProtect()
