"""BI route for a resource's metrics history (microVMs: pushed by their host's agent)."""

from __future__ import annotations

from fastapi import Query

from slices_blueprint.core.deps import BI_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import NotFound, problem_responses
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.routing import api_router
from slices_blueprint.identity.deps import CallerDep
from slices_blueprint.providers.registry import driver_class
from slices_blueprint.resources import service as resources
from slices_blueprint.telemetry import service
from slices_blueprint.telemetry.schemas import ResourceMetrics

router = api_router(BI_PREFIX, "resources")


@router.get("/resources/{resource_id}/metrics", response_model=ResourceMetrics,
            responses=problem_responses(404, 422))
async def resource_metrics(
    resource_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep,
    minutes: int = Query(default=60, ge=1, le=7 * 24 * 60, description="how far back"),
) -> ResourceMetrics:
    """CPU, memory, network and disk rates of a microVM over the last ``minutes``."""
    resource = await resources.get_resource(session, caller, path_id(resource_id, "resource"))
    if not driver_class(resource.provider).reports_metrics:
        raise NotFound(f"no metrics: {resource.provider} resources do not report any")
    vcpus, points = await service.resource_points(session, resource, minutes)
    return ResourceMetrics(resource_id=resource_id, vcpus=vcpus, minutes=minutes, points=points)
