"""SAEs bound to the experiment's machines: their credentials go into the machine, never out.

An SAE whose description names a ``machine`` (a resource of the same experiment) gets, when
that machine is created or reset, ``/etc/qkd/<SAE_ID>/`` with ``sae.crt``, ``sae.key``
(0600), ``ca.crt`` and ``kme.env`` (:func:`machine_provisioning`, the contributor
``domains.wire()`` registers with ``resources/provisioning``). A machine whose provider
forwards guest services (microVMs) reaches its KME as ``https://<KME_ID>.qkd.internal``
through a forward made for it alone; other machines use the KME's public URL (a pod gets a
NetworkPolicy letting it alone reach that address and port).

Which task delivered what is kept in the network's ``description`` under ``deliveries``
(``{sae_id: {resource_id, task_id, at}}``); the API's answer turns it into a status.
"""

from __future__ import annotations

import datetime as dt
import shlex
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import GuestFile, GuestService
from slices_blueprint.qkd.models import QkdNetwork, QkdNode, QkdSae
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.provisioning import Machine, Provisioning
from slices_blueprint.tasks.models import Task

log = structlog.get_logger(__name__)

CREDENTIALS_DIR = "/etc/qkd"
GUEST_DOMAIN = "qkd.internal"
GUEST_PORT = 443


def guest_hostname(kme_id: str) -> str:
    """The name a machine reaches a KME by, through its forward (also in the KME's certificate)."""
    return f"{kme_id}.{GUEST_DOMAIN}"


def credentials_dir(sae_id: str) -> str:
    return f"{CREDENTIALS_DIR}/{sae_id}"


def bindings(network: QkdNetwork) -> dict[str, str]:
    """SAE_ID -> the machine it is bound to, from the network's description."""
    return {sae["id"]: sae["machine"] for node in network.description["nodes"] for sae in node["saes"]
            if isinstance(sae, dict) and sae.get("machine")}


def _kme_env(network: QkdNetwork, node: QkdNode, sae_id: str, kme_url: str, peers: list[str]) -> str:
    values = {"KME_URL": kme_url, "KME_ID": node.kme_id, "SAE_ID": sae_id, "QKD_NETWORK": network.name,
              "PEER_SAE_IDS": ",".join(peers)}
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


async def machine_provisioning(session: AsyncSession, settings: Settings, machine: Machine) -> Provisioning:
    """The credentials of every SAE bound to ``machine`` in the experiment's live networks,
    and (for a provider that forwards) the path to each of their KMEs; each delivery recorded."""
    from slices_blueprint.qkd.service import kme_public_host, kme_url  # service imports this module

    networks = await session.scalars(
        select(QkdNetwork).where(QkdNetwork.experiment_id == machine.experiment_id, QkdNetwork.status == "active")
        .order_by(QkdNetwork.created_at).with_for_update())
    box = secret_box(settings)
    files: list[GuestFile] = []
    services: dict[str, GuestService] = {}
    for network in networks:
        bound = {sae for sae, name in bindings(network).items() if name == machine.name}
        if not bound:
            continue
        nodes = {n.id: n for n in await session.scalars(select(QkdNode).where(QkdNode.network_id == network.id))}
        saes = list(await session.scalars(select(QkdSae).where(QkdSae.network_id == network.id)
                                          .order_by(QkdSae.sae_id)))
        deliveries = dict(network.description.get("deliveries") or {})
        for sae in saes:
            if sae.sae_id not in bound or sae.key is None:
                continue
            node = nodes[sae.node_id]
            hostname = guest_hostname(node.kme_id)  # forwarded (microVMs) or allowed (pods' egress)
            services[hostname] = GuestService(hostname=hostname, port=GUEST_PORT,
                                              target_host=kme_public_host(settings), target_port=node.kme_port)
            url = f"https://{hostname}" if machine.forwards_services else kme_url(node, settings)
            folder = credentials_dir(sae.sae_id)
            peers = [s.sae_id for s in saes if s.sae_id != sae.sae_id]
            files += [
                GuestFile(f"{folder}/sae.crt", sae.cert_pem, 0o644),
                GuestFile(f"{folder}/sae.key", box.decrypt(sae.key).decode(), 0o600),
                GuestFile(f"{folder}/ca.crt", network.ca_cert_pem, 0o644),
                GuestFile(f"{folder}/kme.env", _kme_env(network, node, sae.sae_id, url, peers), 0o644),
            ]
            deliveries[sae.sae_id] = {"resource_id": machine.resource_ref, "task_id": str(machine.task_id),
                                      "at": utcnow().isoformat()}
        network.description = {**network.description, "deliveries": deliveries}
        delivered = sorted(bound & {s.sae_id for s in saes})
        log.info("qkd.credentials_delivering", network_id=str(network.id), resource_id=machine.resource_ref,
                 saes=delivered)
        await record(session, actor="system:worker", action="qkd_sae.credentials_delivering", outcome="ok",
                     resource_id=network.id, experiment_id=network.experiment_id, project_id=network.project_id,
                     machine=machine.name, machine_id=machine.resource_ref, saes=delivered,
                     task_id=str(machine.task_id))
    return Provisioning(tuple(files), tuple(services.values()))


@dataclass(frozen=True)
class Delivery:
    """Where a bound SAE's credentials stand."""

    state: str  # delivered | delivering | failed | waiting
    note: str
    resource_id: str | None = None
    at: dt.datetime | None = None


async def deliveries(session: AsyncSession, settings: Settings, network: QkdNetwork) -> dict[str, Delivery]:
    """The delivery of each bound SAE of ``network`` (SAE_ID -> :class:`Delivery`)."""
    bound = bindings(network)
    if not bound:
        return {}
    recorded: dict[str, dict[str, Any]] = network.description.get("deliveries") or {}
    live = {r.friendly_name: format_id("resource", settings.site_id, r.id) for r in await session.scalars(
        select(ComputeResource).where(ComputeResource.experiment_id == network.experiment_id,
                                      ComputeResource.status != "deleted",
                                      ComputeResource.friendly_name.in_(set(bound.values()))))}
    task_ids = [uuid.UUID(d["task_id"]) for d in recorded.values()]
    tasks = {t.id: t for t in await session.scalars(select(Task).where(Task.id.in_(task_ids)))} if task_ids else {}
    return {sae_id: _delivery(sae_id, machine, recorded.get(sae_id), live.get(machine), tasks)
            for sae_id, machine in bound.items()}


def _delivery(sae_id: str, machine: str, done: dict[str, Any] | None, live: str | None,
              tasks: dict[uuid.UUID, Task]) -> Delivery:
    where = f"{credentials_dir(sae_id)}/ in machine {machine!r}"
    task = tasks.get(uuid.UUID(done["task_id"])) if done else None
    if done is None or task is None or live != done["resource_id"]:
        if live is None:
            return Delivery("waiting", f"no machine named {machine!r} in the experiment yet: "
                                       "the credentials go into it when it is created")
        return Delivery("waiting", f"machine {machine!r} was created before the network: "
                                   "reset it to deliver the credentials", live)
    if task.status == "succeeded":
        return Delivery("delivered", where, live, task.finished_at)
    if task.status in ("failed", "cancelled"):
        return Delivery("failed", f"the machine's {task.kind} {task.status}: reset it to deliver again", live)
    return Delivery("delivering", f"{where}, with its {task.kind} under way", live)
