"""BI routes for QKD networks. Changes need the experiment token; reads any token."""

from __future__ import annotations

from fastapi import Path, Query

from slices_blueprint.core.deps import BI_PREFIX, SessionDep, SettingsDep, one_snapshot
from slices_blueprint.core.errors import BODY_PROBLEMS, problem_responses
from slices_blueprint.core.ids import id_schema, path_id
from slices_blueprint.core.routing import api_router
from slices_blueprint.identity.deps import CallerDep, ReadingCallerDep
from slices_blueprint.qkd import service
from slices_blueprint.qkd.description import NetworkDescription
from slices_blueprint.qkd.schemas import LinkUpdate, NetworkOut, SaeCredentials
from slices_blueprint.resources.schemas import ExtendRequest, ExtendResult
from slices_blueprint.resources.service import extend_result

router = api_router(f"{BI_PREFIX}/qkd-networks", "qkd networks")
NETWORK_ID = Path(json_schema_extra=id_schema(service.ID_TYPE))
PER_NETWORK = problem_responses(404, 422)  # another experiment's network: 404 like a missing one


@router.post("", response_model=NetworkOut, status_code=201,
             responses=problem_responses(403, 503, *BODY_PROBLEMS))
async def create_network(body: NetworkDescription, caller: CallerDep, session: SessionDep,
                         settings: SettingsDep) -> NetworkOut:
    """Create a QKD network in the caller's experiment from its description; its KMEs start
    serving within seconds at the URLs answered."""
    network = await service.create_network(session, settings, caller, body)
    return await service.network_out(session, settings, network)


@router.get("", response_model=list[NetworkOut])
@one_snapshot
async def list_networks(caller: ReadingCallerDep, session: SessionDep, settings: SettingsDep,
                        include_deleted: bool = Query(default=False)) -> list[NetworkOut]:
    """The experiment's QKD networks (experiment token), or the user's projects' (user token)."""
    networks = await service.list_networks(session, caller, include_deleted=include_deleted)
    return [await service.network_out(session, settings, n) for n in networks]


@router.get("/{network_id}", response_model=NetworkOut, responses=PER_NETWORK)
@one_snapshot
async def get_network(caller: ReadingCallerDep, session: SessionDep, settings: SettingsDep,
                      network_id: str = NETWORK_ID) -> NetworkOut:
    """A network with its KMEs, SAEs and links: live key rate, QBER, pool and state."""
    network = await service.get_network(session, caller, path_id(network_id, service.ID_TYPE))
    return await service.network_out(session, settings, network)


@router.delete("/{network_id}", response_model=NetworkOut, responses=problem_responses(403, 404, 422))
async def delete_network(caller: CallerDep, session: SessionDep, settings: SettingsDep,
                         network_id: str = NETWORK_ID) -> NetworkOut:
    """Delete a network: its KMEs stop, its pools and undelivered keys are erased."""
    network = await service.get_network(session, caller, path_id(network_id, service.ID_TYPE), write=True)
    await service.delete_network(session, network, caller.actor)
    return await service.network_out(session, settings, network)


@router.post("/{network_id}/extend", response_model=ExtendResult,
             responses=problem_responses(403, 404, 409, *BODY_PROBLEMS))
async def extend_network(body: ExtendRequest, caller: CallerDep, session: SessionDep, settings: SettingsDep,
                         network_id: str = NETWORK_ID) -> ExtendResult:
    """Move the expiry later (never earlier); answers what was granted, capped at the
    experiment's expiry."""
    requested = body.requested()
    network = await service.get_network(session, caller, path_id(network_id, service.ID_TYPE), write=True)
    return extend_result(network_id, await service.extend(session, settings, caller, network, requested))


@router.patch("/{network_id}/links/{link}", response_model=NetworkOut,
              responses=problem_responses(403, 404, 409, *BODY_PROBLEMS))
async def update_link(body: LinkUpdate, caller: CallerDep, session: SessionDep, settings: SettingsDep,
                      network_id: str = NETWORK_ID,
                      link: str = Path(description="<node>-<node>", max_length=127)) -> NetworkOut:
    """Change a link's parameters (fibre length, eavesdropper, ...): its key rate and QBER
    follow at once, while keys are being served."""
    network = await service.get_network(session, caller, path_id(network_id, service.ID_TYPE), write=True)
    await service.update_link(session, network, link, body, caller.actor)
    return await service.network_out(session, settings, network)


@router.post("/{network_id}/saes/{sae_id}/credentials", response_model=SaeCredentials,
             responses=problem_responses(403, 404, 409, 422))
async def take_credentials(caller: CallerDep, session: SessionDep, settings: SettingsDep,
                           network_id: str = NETWORK_ID,
                           sae_id: str = Path(max_length=64)) -> SaeCredentials:
    """An SAE's certificate, private key, the network's CA and its KME's URL, for a machine
    outside the experiment. The private key is answered once, then erased (409 after)."""
    network = await service.get_network(session, caller, path_id(network_id, service.ID_TYPE), write=True)
    return await service.take_credentials(session, settings, network, sae_id, caller.actor)
