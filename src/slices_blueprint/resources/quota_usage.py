"""What a project's resources count towards its quotas (registered with ``quotas/`` by
``slices_blueprint.domains``)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import Flavor
from slices_blueprint.quotas.service import UsageRow
from slices_blueprint.resources.models import ComputeResource


async def resource_usage(session: AsyncSession, project_id: str) -> list[UsageRow]:
    """The project's live (not deleted) resources per provider, with their flavors' sizes."""
    rows = await session.execute(
        select(
            ComputeResource.provider, func.count(), func.sum(Flavor.vcpus), func.sum(Flavor.ram_mib)
        )
        .join(Flavor, Flavor.id == ComputeResource.flavor_id)
        .where(ComputeResource.project_id == project_id, ComputeResource.status != "deleted")
        .group_by(ComputeResource.provider)
    )
    return [(provider, count, vcpus, ram_mib) for provider, count, vcpus, ram_mib in rows]
