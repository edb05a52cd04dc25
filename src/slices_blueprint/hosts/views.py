"""Hosts API: admins issue enrolment tokens; an agent registers with its enrolment token
once, afterwards with its own token, and heartbeats with its own token; admins list,
drain, activate and remove hosts."""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from slices_blueprint.agent.protocol import (
    Heartbeat,
    HeartbeatOut,
    HostRegistration,
    RegistrationOut,
)
from slices_blueprint.core.deps import API_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import Conflict, Unauthorized
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.routing import api_router
from slices_blueprint.hosts import service
from slices_blueprint.hosts.schemas import EnrolmentOut, EnrolmentRequest, HostOut
from slices_blueprint.identity.deps import CallerDep, caller_from_token

log = structlog.get_logger(__name__)
router = api_router(f"{API_PREFIX}/hosts", "hosts")
bearer = HTTPBearer(auto_error=False, description="enrolment token, host token or admin token")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _presented(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise Unauthorized("a bearer token is required")
    return credentials.credentials


@router.post("/enrolments", response_model=EnrolmentOut, status_code=201)
async def create_enrolment(body: EnrolmentRequest, caller: CallerDep, session: SessionDep,
                           settings: SettingsDep) -> EnrolmentOut:
    """A one-time token (shown once, expiring) with which the agent of host ``name`` enrols."""
    admin = caller.require_admin()
    return await service.create_enrolment(session, settings, body.name, admin.id,
                                          replace=body.replace)


@router.post("/register", response_model=RegistrationOut, status_code=201)
async def register(
    body: HostRegistration, request: Request, session: SessionDep, settings: SettingsDep,
    credentials: BearerDep,
) -> RegistrationOut:
    """An agent enrols (its enrolment token) or registers again (its own host token); an
    admin may register a new name with their own token. Nobody else may take a name over."""
    presented = _presented(credentials)
    if enrolment := await service.claim_enrolment(session, presented):
        host = await service.enrol(session, settings, enrolment, body)
    elif (known := await service.by_name(session, body.name)) and service.owns(
            settings, known, presented):
        host = await service.register(session, settings, body, known)
    else:
        if known is not None:
            log.warning("hosts.registration_refused", name=body.name,
                        reason="not the host's own token")
        caller = await caller_from_token(request, session, presented)
        caller.require_admin()
        if known is not None:
            raise Conflict(f"host {body.name} is already registered; only its own agent may "
                           "register it again")
        host = await service.register(session, settings, body)
    return RegistrationOut(id=service.host_out(host, settings.site_id).id,
                           heartbeat_seconds=service.HostPolicy.of(settings).heartbeat_seconds)


@router.post("/{host_id}/heartbeat", response_model=HeartbeatOut)
async def heartbeat(
    host_id: str, body: Heartbeat, session: SessionDep, settings: SettingsDep,
    credentials: BearerDep,
) -> HeartbeatOut:
    """Capacity and metrics from the host's agent, authenticated by the host's token."""
    host = await service.authenticate_heartbeat(
        session, settings, path_id(host_id, "host"), _presented(credentials)
    )
    if host is None:
        raise Unauthorized("unknown host or wrong host token; register again")
    await service.heartbeat(session, host, body)
    await service.notify_heartbeat(session, host, body)
    return HeartbeatOut(status=host.status)


@router.get("", response_model=list[HostOut])
async def list_hosts(caller: CallerDep, session: SessionDep, settings: SettingsDep) -> list[HostOut]:
    caller.require_admin()
    placed = await service.resources_on_hosts(session)
    return [service.host_out(h, settings.site_id, placed.get(h.id, [])) for h in await service.list_hosts(session)]


@router.post("/{host_id}/{action}", response_model=HostOut)
async def change_status(
    host_id: str, action: Literal["drain", "activate"], caller: CallerDep, session: SessionDep,
    settings: SettingsDep,
) -> HostOut:
    """Drain (keep its VMs, place no new ones) or activate a host."""
    caller.require_admin()
    status = service.DRAINING if action == "drain" else service.ACTIVE
    host = await service.set_status(session, path_id(host_id, "host"), status)
    return service.host_out(host, settings.site_id)


@router.delete("/{host_id}", status_code=204)
async def remove_host(
    host_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep, force: bool = False,
) -> Response:
    """Forget a host (its VMs are not touched). A host with live resources is refused (409)
    unless ``force=true``: drain it and delete them first."""
    caller.require_admin()
    await service.remove(session, path_id(host_id, "host"), settings.site_id, force=force)
    return Response(status_code=204)
