"""Quotas: every caller reads their projects' limits and usage; admins set overrides."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from slices_blueprint.core.deps import API_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import BODY_PROBLEMS, Invalid, NotFound, problem_responses
from slices_blueprint.core.routing import api_router
from slices_blueprint.identity.deps import Caller, CallerDep
from slices_blueprint.providers.registry import enabled_types
from slices_blueprint.quotas import service
from slices_blueprint.quotas.schemas import QuotaOut, QuotaUpdate

router = api_router(f"{API_PREFIX}/quotas", "quotas")
ProjectId = Annotated[str, Path(min_length=1, max_length=200)]


async def visible_projects(session: SessionDep, caller: Caller) -> list[str]:
    """The projects whose quotas the caller may read: an experiment's, a user's, all for admins."""
    if caller.is_admin:
        return list(await service.known_projects(session))
    return sorted(caller.project_ids)


@router.get("", response_model=list[QuotaOut])
async def list_quotas(
    caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> list[QuotaOut]:
    """Limits and usage of the caller's project(s) (every known project for admins)."""
    return [
        await service.quota_out(session, settings, p)
        for p in await visible_projects(session, caller)
    ]


@router.get("/{project_id}", response_model=QuotaOut, responses=problem_responses(404, 422))
async def get_quota(
    project_id: ProjectId, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> QuotaOut:
    """Limits and usage of one of the caller's projects."""
    if not (caller.is_admin or project_id in caller.project_ids):
        raise NotFound("no such project among yours")
    return await service.quota_out(session, settings, project_id)


@router.put(
    "/{project_id}", response_model=QuotaOut, responses=problem_responses(403, *BODY_PROBLEMS)
)
async def put_quota(
    project_id: ProjectId,
    body: QuotaUpdate,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> QuotaOut:
    """Set a project's quota (admins). The body replaces the project's override: a field
    left out inherits the site default, ``null`` is unlimited; ``{}`` restores the defaults."""
    admin = caller.require_admin()
    offered = enabled_types(settings)
    unknown = sorted(set(body.flavor_types) - set(offered))
    if unknown:
        raise Invalid(
            f"flavor_types: {', '.join(unknown)} not offered by this site ({', '.join(offered)})"
        )
    await service.set_override(session, project_id, body, admin.id)
    return await service.quota_out(session, settings, project_id)
