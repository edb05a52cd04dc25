"""Users, projects and experiments: upserted from verified token claims."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.errors import Forbidden
from slices_blueprint.core.security import VerifiedToken
from slices_blueprint.identity.models import Experiment, Project, User

T = TypeVar("T", User, Project, Experiment)

USER_CLAIMS = {
    "preferred_username": ("preferred_username", "username"),
    "first_name": ("first_name", "given_name"),
    "last_name": ("last_name", "family_name"),
    "affiliation": ("affiliation",),
    "organization": ("organization",),
    "email": ("email",),
    "public_ssh_key": ("public_ssh_key",),
}


def _claim(claims: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((claims[n] for n in names if claims.get(n) not in (None, "")), None)


def parse_expiry(value: Any) -> dt.datetime | None:
    """An ISO 8601 string or epoch seconds, as an aware datetime (None when absent/invalid)."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, int | float):
            return dt.datetime.fromtimestamp(value, dt.UTC)
        parsed = dt.datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _unchanged(row: Any, values: dict[str, Any]) -> bool:
    """Whether ``row`` already holds every value the claims give (None: not given)."""
    return row is not None and all(getattr(row, k) == v for k, v in values.items() if v is not None)


async def _upsert(session: AsyncSession, model: type[T], values: dict[str, Any]) -> T:
    """Insert or update the row keyed by ``values["id"]``; writes nothing when nothing changed
    (most requests come from people already known)."""
    known = {k: v for k, v in values.items() if v is not None}
    row = await session.get(model, values["id"])
    if _unchanged(row, values):
        return row
    stmt = insert(model).values(**values)
    changes = {k: v for k, v in known.items() if k != "id"}
    if changes:  # the key is not set again: a key update would lock out every insert referencing the row
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={**changes, "updated_at": dt.datetime.now(dt.UTC)})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
    await session.execute(stmt)
    row = await session.get(model, values["id"], populate_existing=True)
    assert row is not None
    return row


async def upsert_user(session: AsyncSession, token: VerifiedToken) -> User:
    values = {field: _claim(token.claims, names) for field, names in USER_CLAIMS.items()}
    return await _upsert(session, User, {"id": token.subject, **values})


async def upsert_experiment(session: AsyncSession, token: VerifiedToken) -> Experiment:
    """Record the experiment (and its project) named by an experiment token."""
    claims = token.claims
    project_id = str(claims["proj"])
    project = {"id": project_id, "name": claims.get("project_name"),
               "expires_at": parse_expiry(claims.get("project_expires_at"))}
    wanted = {"id": token.subject, "project_id": project_id, "name": claims.get("experiment_name"),
              "expires_at": parse_expiry(claims.get("expires_at") or claims.get("experiment_expires_at"))}
    known = (await session.execute(
        select(Experiment, Project).join(Project, Project.id == Experiment.project_id)
        .where(Experiment.id == token.subject)
    )).first()  # one query for the usual case: both known, nothing changed
    if known is not None:
        if known.Experiment.project_id != project_id:
            raise Forbidden("experiment token names another project than the one on record")
        if _unchanged(known.Experiment, wanted) and _unchanged(known.Project, project):
            return known.Experiment
    await _upsert(session, Project, project)
    return await _upsert(session, Experiment, wanted)


async def names_of(session: AsyncSession, model: type[Project | Experiment], ids: set[str]) -> dict[str, str]:
    """The names of the projects or experiments ``ids`` (those without one are left out)."""
    if not ids:
        return {}
    rows = await session.execute(select(model.id, model.name).where(model.id.in_(ids), model.name.is_not(None)))
    return {row_id: name for row_id, name in rows}
