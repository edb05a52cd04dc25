"""Quotas: the limits in effect for a project, what it uses, and the check that admits a
batch of new resources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import structlog
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import Flavor
from slices_blueprint.core.config import Settings
from slices_blueprint.core.direct_sql import fetch_one
from slices_blueprint.core.errors import Forbidden
from slices_blueprint.events.service import record
from slices_blueprint.identity.models import Project
from slices_blueprint.quotas.models import ProjectQuota
from slices_blueprint.quotas.schemas import (
    QuotaExcess,
    QuotaLimits,
    QuotaOut,
    QuotaUpdate,
    QuotaUsage,
)

log = structlog.get_logger(__name__)
TOTALS = ("instances", "vcpus", "ram_mib")


class QuotaExceeded(Forbidden):
    title = "Quota exceeded"


def site_limits(settings: Settings) -> QuotaLimits:
    return QuotaLimits(
        instances=settings.quota_instances,
        vcpus=settings.quota_vcpus,
        ram_mib=settings.quota_ram_mib,
        flavor_types=dict(settings.quota_flavor_types),
    )


def effective(settings: Settings, override: dict) -> QuotaLimits:
    """The site defaults with a project's override laid over them."""
    site = site_limits(settings).model_dump()
    flavor_types = {**site["flavor_types"], **override.get("flavor_types", {})}
    return QuotaLimits.model_validate({**site, **override, "flavor_types": flavor_types})


def is_bounded(limits: QuotaLimits) -> bool:
    return any(getattr(limits, name) is not None for name in TOTALS) or any(
        v is not None for v in limits.flavor_types.values()
    )


OVERRIDE = select(ProjectQuota.limits).where(ProjectQuota.project_id == bindparam("quota_project_id"))
OVERRIDE_SQL = str(OVERRIDE.compile(dialect=psycopg_dialect()))
""":data:`OVERRIDE`'s SQL, for a subquery of a statement (``core.direct_sql.Writes``): the
limits an admin set for the project ``quota_project_id`` (NULL: none)."""


async def override_of(session: AsyncSession, project_id: str) -> dict:
    """The limits an admin set for the project (none: {})."""
    row = await fetch_one(session, OVERRIDE, quota_project_id=project_id)
    return dict(row[0]) if row else {}


UsageRow = tuple[str, int, int, int]
"""Live resources of one flavor type: (flavor type, how many, their vCPUs, their MiB)."""
UsageCounter = Callable[[AsyncSession, str], Awaitable[Iterable[UsageRow]]]
_counters: dict[str, UsageCounter] = {}


def register_usage_counter(name: str, counter: UsageCounter) -> None:
    """Count what ``counter`` reports towards projects' quotas (wired at start-up by
    ``slices_blueprint.domains``; registering ``name`` again replaces its counter)."""
    _counters[name] = counter


async def usage_of(session: AsyncSession, project_id: str) -> QuotaUsage:
    """The project's live (not deleted) resources, with their flavors' sizes, as every
    registered counter reports them."""
    if not _counters:
        raise RuntimeError("no quota usage counter is registered: call slices_blueprint.domains.wire() "
                           "before serving, or every quota would admit everything")
    rows = [row for counter in _counters.values() for row in await counter(session, project_id)]
    return _total(rows)


def requested_by(flavors: Iterable[Flavor]) -> QuotaUsage:
    """What new resources of these flavors would add."""
    return _total((f.flavor_type, 1, f.vcpus, f.ram_mib) for f in flavors)


def _total(rows: Iterable[UsageRow]) -> QuotaUsage:
    usage = QuotaUsage()
    for flavor_type, count, vcpus, ram_mib in rows:
        usage.instances += count
        usage.vcpus += vcpus
        usage.ram_mib += ram_mib
        usage.flavor_types[flavor_type] = usage.flavor_types.get(flavor_type, 0) + count
    return usage


def excesses(limits: QuotaLimits, used: QuotaUsage, requested: QuotaUsage) -> list[QuotaExcess]:
    """Every limit that ``used + requested`` would pass."""
    checks = [
        (name, getattr(limits, name), getattr(used, name), getattr(requested, name))
        for name in TOTALS
    ]
    checks += [
        (
            f"flavor_types.{kind}",
            limits.flavor_types.get(kind),
            used.flavor_types.get(kind, 0),
            count,
        )
        for kind, count in requested.flavor_types.items()
    ]
    return [
        QuotaExcess(limit=name, used=u, requested=r, allowed=a)
        for name, a, u, r in checks
        if a is not None and r > 0 and u + r > a
    ]


async def admit(
    session: AsyncSession, settings: Settings, project_id: str, flavors: list[Flavor],
    override: dict | None = None,
) -> None:
    """Refuse (403, naming used, requested and allowed) new resources of these flavors when
    they would take the project past a limit (``override``: the project's, read in this
    transaction already; read here if not given).

    The project's row is locked first (``SELECT ... FOR UPDATE``, held until the request's
    transaction ends), so the concurrent requests of one project are counted one after
    another and cannot all pass on the same usage.
    """
    if override is None:
        override = await override_of(session, project_id)
    limits = effective(settings, override)
    if not is_bounded(limits):
        return
    await session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    used = await usage_of(session, project_id)
    over = excesses(limits, used, requested_by(flavors))
    if over:
        detail = "; ".join(
            f"{e.limit}: {e.used} used + {e.requested} requested > {e.allowed} allowed"
            for e in over
        )
        log.info("quota.exceeded", project_id=project_id, detail=detail)
        raise QuotaExceeded(
            f"project {project_id} is over its quota: {detail}",
            quota=[e.model_dump() for e in over],
        )


async def quota_out(session: AsyncSession, settings: Settings, project_id: str) -> QuotaOut:
    override = await override_of(session, project_id)
    return QuotaOut(
        project_id=project_id,
        limits=effective(settings, override),
        usage=await usage_of(session, project_id),
        override=override,
    )


async def known_projects(session: AsyncSession) -> dict[str, str | None]:
    """Every project on record: id -> name."""
    return dict(
        (await session.execute(select(Project.id, Project.name).order_by(Project.id)))
        .tuples()
        .all()
    )


async def set_override(
    session: AsyncSession, project_id: str, body: QuotaUpdate, actor: str
) -> None:
    """Replace a project's override (recording the project if no token named it yet)."""
    limits = body.model_dump(exclude_unset=True)
    await session.execute(
        insert(Project).values(id=project_id).on_conflict_do_nothing(index_elements=["id"])
    )
    await session.execute(
        insert(ProjectQuota)
        .values(project_id=project_id, limits=limits, updated_by=actor)
        .on_conflict_do_update(
            index_elements=["project_id"],
            set_={"limits": limits, "updated_by": actor, "updated_at": func.now()},
        )
    )
    await record(
        session,
        actor=actor,
        action="quota.update",
        outcome="ok",
        project_id=project_id,
        limits=limits,
    )
