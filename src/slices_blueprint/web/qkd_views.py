"""QKD networks in the UI: the list with a create form, a network's page (drawing, links,
live charts), link changes, credentials once, delete. The API's service functions do the
work; reads are scoped like the API's (user), changes need the experiment token."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import yaml
from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.deps import SessionDep, SettingsDep, one_snapshot
from slices_blueprint.core.errors import Invalid, ProblemError
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.routing import page_router
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment
from slices_blueprint.identity.service import names_of
from slices_blueprint.qkd import samples, service
from slices_blueprint.qkd.description import NetworkDescription
from slices_blueprint.qkd.models import QkdNetwork
from slices_blueprint.qkd.schemas import LinkUpdate, NetworkOut
from slices_blueprint.web import qkd_drawing
from slices_blueprint.web.charts import HEIGHT, WIDTH
from slices_blueprint.web.deps import (
    UI,
    CsrfChecked,
    ExperimentDep,
    FormRejected,
    UserDep,
    redirect,
    render,
)
from slices_blueprint.web.reservation_banner import EXTEND_HOURS, ending_soon

router = page_router(UI)
Text = Annotated[str, Form()]
CHART_MINUTES = 10
EXAMPLE = """name: two-nodes
nodes:
  - name: alice
    saes: [alice-app]
  - name: bob
    saes: [bob-app]
links:
  - between: [alice, bob]
    length_km: 25
"""


def parse_description(text: str) -> NetworkDescription:
    """A network description from pasted YAML or JSON, or :class:`Invalid` saying what is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise Invalid(f"not valid YAML or JSON{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise Invalid("give a mapping with name, nodes and links (see the example)")
    try:
        return NetworkDescription.model_validate(data)
    except ValidationError as exc:
        raise Invalid("; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'description'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())) from None


def network_summary(network: NetworkOut) -> str:
    """``1 generating, 1 stopped``."""
    states = [link.state for link in network.links]
    return ", ".join(f"{states.count(s)} {s}" for s in ("generating", "stopped") if s in states) or "no links"


async def _list_context(db: AsyncSession, settings: Settings, caller: Caller) -> dict:
    networks = await service.list_networks(db, caller, include_deleted=False)
    return {"networks": [await service.network_out(db, settings, n) for n in networks], "example": EXAMPLE,
            "summary": network_summary,
            "experiment_names": await names_of(db, Experiment, {n.experiment_id for n in networks})}


@router.get("/qkd-networks", response_class=HTMLResponse)
@one_snapshot
async def networks_page(request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """The networks the user may see, each with its links' states, and the create form."""
    return render(request, "qkd_networks.html", description="", errors={},
                  **await _list_context(db, settings, caller))


@router.post("/qkd-networks", dependencies=[CsrfChecked])
async def create_network(request: Request, db: SessionDep, settings: SettingsDep, caller: ExperimentDep,
                         user: UserDep, description: Text = "") -> RedirectResponse:
    """Create a network from its description as the API does; a refused one comes back with
    the error next to the text, which is kept."""
    try:
        network = await service.create_network(db, settings, caller, parse_description(description))
    except ProblemError as exc:  # invalid, name taken, over quota, no port: all about the text
        context = await _list_context(db, settings, user)
        raise FormRejected(request, "qkd_networks.html", {"description": description, **context},
                           {"description": exc.detail}) from exc
    out = await service.network_out(db, settings, network)
    return redirect(request, f"{UI}/qkd-networks/{out.id}", f"Created QKD network {network.name}.")


async def _network(db: AsyncSession, caller: Caller, network_id: str, *, write: bool = False) -> QkdNetwork:
    return await service.get_network(db, caller, path_id(network_id, service.ID_TYPE), write=write)


async def _live_context(db: AsyncSession, settings: Settings, network: QkdNetwork) -> dict:
    out = await service.network_out(db, settings, network)
    now = utcnow()
    history = await samples.network_history(db, network.id, now - dt.timedelta(minutes=CHART_MINUTES))
    return {"n": out, "drawing": qkd_drawing.drawing(out), "bitrate": qkd_drawing.bitrate, "threshold": qkd_drawing.threshold,
            "charts": {link.name: qkd_drawing.link_charts(link, history.get(link.name, []), CHART_MINUTES, now)
                       for link in out.links},
            "minutes": CHART_MINUTES, "width": WIDTH, "height": HEIGHT}


@router.get("/qkd-networks/{network_id}", response_class=HTMLResponse)
@one_snapshot
async def network_page(network_id: str, request: Request, db: SessionDep, settings: SettingsDep,
                       caller: UserDep) -> HTMLResponse:
    """The drawing, the links with their figures and charts (live), the link forms, the SAEs."""
    network = await _network(db, caller, network_id)
    banners = await ending_soon(db, settings, caller, network.reservation_id) if network.reservation_id else []
    return render(request, "qkd_network.html", banners=banners, extend_hours=EXTEND_HOURS,
                  **await _live_context(db, settings, network),
                  experiment_names=await names_of(db, Experiment, {network.experiment_id}))


@router.get("/fragments/qkd-networks/{network_id}", response_class=HTMLResponse)
@one_snapshot
async def network_live(network_id: str, request: Request, db: SessionDep, settings: SettingsDep,
                       caller: UserDep) -> HTMLResponse:
    """The network's live part: drawing, link table, charts (polled by its page)."""
    network = await _network(db, caller, network_id)
    return render(request, "fragments/qkd_live.html", **await _live_context(db, settings, network))


def _number(field: str, text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise Invalid(f"{field}: give a number") from None


@router.post("/qkd-networks/{network_id}/links/{link}", dependencies=[CsrfChecked], response_model=None)
async def update_link(network_id: str, link: str, request: Request, db: SessionDep, settings: SettingsDep,
                      caller: ExperimentDep, length_km: Text = "", eavesdropper: Text = "") -> Response:
    """Change a link's length or eavesdropper as the API does; answers a note (htmx) or the page."""
    network = await _network(db, caller, network_id, write=True)
    update = LinkUpdate(length_km=_number("length_km", length_km), eavesdropper=_number("eavesdropper", eavesdropper))
    await service.update_link(db, network, link, update, caller.actor)
    out = await service.network_out(db, settings, network)
    changed = next(li for li in out.links if link in (li.name, "-".join(reversed(li.between))))
    note = f"Link {changed.name} is now {changed.state}" + (f": {changed.state_reason}" if changed.state_reason else ".")
    if request.headers.get("HX-Request") == "true":
        return render(request, "fragments/qkd_link_note.html", note=note)
    return redirect(request, f"{UI}/qkd-networks/{network_id}", note)


@router.get("/qkd-networks/{network_id}/delete", response_class=HTMLResponse)
@one_snapshot
async def confirm_delete(network_id: str, request: Request, db: SessionDep, settings: SettingsDep,
                         caller: ExperimentDep) -> HTMLResponse:
    """Ask before deleting a network."""
    network = await _network(db, caller, network_id)
    return render(request, "qkd_confirm_delete.html", n=await service.network_out(db, settings, network))


@router.post("/qkd-networks/{network_id}/delete", dependencies=[CsrfChecked])
async def delete_network(network_id: str, request: Request, db: SessionDep, caller: ExperimentDep) -> RedirectResponse:
    """Delete the network as the API does: its KMEs stop, its pools and keys go."""
    network = await _network(db, caller, network_id, write=True)
    await service.delete_network(db, network, caller.actor)
    return redirect(request, f"{UI}/qkd-networks", f"Deleted QKD network {network.name}.")


@router.post("/qkd-networks/{network_id}/saes/{sae_id}/credentials", dependencies=[CsrfChecked],
             response_class=HTMLResponse)
async def take_credentials(network_id: str, sae_id: str, request: Request, db: SessionDep, settings: SettingsDep,
                           caller: ExperimentDep) -> HTMLResponse:
    """An SAE's certificate, private key, CA and KME URL, shown once (the key is erased now)."""
    network = await _network(db, caller, network_id, write=True)
    credentials = await service.take_credentials(db, settings, network, sae_id, caller.actor)
    response = render(request, "qkd_credentials.html", c=credentials, n=network,
                      network_id=network_id)
    response.headers["Cache-Control"] = "no-store"
    return response
