"""Role scoping of sales records: a rep sees their own, a sales manager those of their team(s),
director / finance / admin everything."""

from __future__ import annotations

from sqlalchemy import select

from ..auth.models import User
from ..errors import NotFound
from ..extensions import db
from .models import Team, TeamMember

SEE_ALL = ("director", "finance", "admin")


def team_ids_managed_by(user: User) -> list[int]:
    """Teams whose manager is the user."""
    return list(db.session.scalars(select(Team.id).where(Team.manager_id == user.id)))


def _member_ids(team_ids: list[int]) -> list[int]:
    return list(db.session.scalars(select(TeamMember.user_id).where(TeamMember.team_id.in_(team_ids))))


def visible_owner_ids(user: User) -> list[int] | None:
    """Owners whose records the user may see (None: everyone's)."""
    if user.has_role(*SEE_ALL):
        return None
    owners = {user.id}
    if user.has_role("sales_manager"):
        owners.update(_member_ids(team_ids_managed_by(user)))
    return sorted(owners)


def scoped(stmt, owner_column, user: User):
    """``stmt`` limited to rows whose owner the user may see."""
    owners = visible_owner_ids(user)
    return stmt if owners is None else stmt.where(owner_column.in_(owners))


def check_visible(owner_id: int | None, user: User, what: str) -> None:
    """NotFound unless the user may see records of ``owner_id`` (no hint that the record exists)."""
    owners = visible_owner_ids(user)
    if owners is not None and owner_id not in owners:
        raise NotFound(f"{what} does not exist")  # not 403: no hint that it exists

