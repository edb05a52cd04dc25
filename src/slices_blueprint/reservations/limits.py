"""Per-project limits on reserved hours: the site default
(``reservation_max_hours_per_project``), admins' overrides, and the check made under the
project's row lock.

A reservation's hours are its length times what it holds: each equipment item counts, and
a capacity share counts once. The project's scheduled and active reservations count.
"""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.events.service import record
from slices_blueprint.identity.models import Project
from slices_blueprint.quotas.service import QuotaExceeded
from slices_blueprint.reservations.models import (
    LIVE,
    Reservation,
    ReservationLimit,
    ReservedEquipment,
)
from slices_blueprint.reservations.schemas import ReservationLimitOut, ReservationLimitUpdate

log = structlog.get_logger(__name__)


def hours(start: dt.datetime, end: dt.datetime, items: int, capacity: bool) -> float:
    """The reserved hours of holding ``items`` equipment items (and a capacity share) over
    ``[start, end)``."""
    return (end - start).total_seconds() / 3600 * (items + int(capacity))


async def override_of(session: AsyncSession, project_id: str) -> dict:
    row = await session.get(ReservationLimit, project_id)
    return {"max_hours": row.max_hours} if row else {}


async def max_hours(session: AsyncSession, settings: Settings, project_id: str) -> int | None:
    return (await override_of(session, project_id)).get("max_hours", settings.reservation_max_hours_per_project)


async def reserved_hours(session: AsyncSession, project_id: str) -> float:
    """Hours held by the project's scheduled and active reservations."""
    items = (select(func.count()).where(ReservedEquipment.reservation_id == Reservation.id)
             .correlate(Reservation).scalar_subquery())
    rows = await session.execute(
        select(Reservation.starts_at, Reservation.ends_at, items, (Reservation.vcpus + Reservation.ram_mib) > 0)
        .where(Reservation.project_id == project_id, Reservation.status.in_(LIVE)))
    return sum(hours(start, end, count, capacity) for start, end, count, capacity in rows)


async def admit(session: AsyncSession, settings: Settings, project_id: str, requested: float) -> None:
    """Refuse (403, naming used, requested and allowed) ``requested`` more hours past the
    project's limit. The project's row is locked first (held until the transaction ends),
    so one project's concurrent requests are counted one after another."""
    await session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    allowed = await max_hours(session, settings, project_id)
    if allowed is None:
        return
    used = await reserved_hours(session, project_id)
    if used + requested > allowed:
        log.info("reservations.limit_exceeded", project_id=project_id, used=used, requested=requested)
        raise QuotaExceeded(
            f"project {project_id} would hold more reserved hours than allowed: {used:g} held + "
            f"{requested:g} requested > {allowed} allowed",
            quota=[{"limit": "reserved_hours", "used": round(used, 3), "requested": round(requested, 3),
                    "allowed": allowed}])


async def known_projects(session: AsyncSession) -> list[str]:
    """Every project with a reservation or a limit."""
    return sorted(await session.scalars(select(Reservation.project_id).union(select(ReservationLimit.project_id))))


async def limit_out(session: AsyncSession, settings: Settings, project_id: str) -> ReservationLimitOut:
    return ReservationLimitOut(project_id=project_id, max_hours=await max_hours(session, settings, project_id),
                               reserved_hours=round(await reserved_hours(session, project_id), 3),
                               override=await override_of(session, project_id))


async def set_override(session: AsyncSession, project_id: str, body: ReservationLimitUpdate, actor: str) -> None:
    """Replace a project's override: ``max_hours`` given (null: unlimited), or none (the
    site default again)."""
    await session.execute(insert(Project).values(id=project_id).on_conflict_do_nothing(index_elements=["id"]))
    if "max_hours" in body.model_fields_set:
        await session.execute(
            insert(ReservationLimit).values(project_id=project_id, max_hours=body.max_hours, updated_by=actor)
            .on_conflict_do_update(index_elements=["project_id"],
                                   set_={"max_hours": body.max_hours, "updated_by": actor, "updated_at": func.now()}))
    else:
        row = await session.get(ReservationLimit, project_id)
        if row is not None:
            await session.delete(row)
    await record(session, actor=actor, action="reservations.limit_update", outcome="ok", project_id=project_id,
                 limits=body.model_dump(exclude_unset=True))
