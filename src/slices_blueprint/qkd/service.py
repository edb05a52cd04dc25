"""QKD network operations requested through the API (and by the reaper)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid

import procrastinate
import structlog
from sqlalchemy import Select, column, delete, func, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import (
    Conflict,
    Invalid,
    NotFound,
    ProblemError,
    ServiceUnavailable,
)
from slices_blueprint.core.ids import body_id, format_id, new_uuid
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.events.models import Event
from slices_blueprint.events.service import record
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment, Project
from slices_blueprint.qkd import binding, keypool, pki
from slices_blueprint.qkd.description import NetworkDescription
from slices_blueprint.qkd.models import (
    ACTIVE,
    DELETED,
    FAILED,
    LIVE,
    PENDING,
    QkdLink,
    QkdNetwork,
    QkdNode,
    QkdSae,
)
from slices_blueprint.qkd.physics import LinkParameters, LinkPerformance, link_performance
from slices_blueprint.qkd.schemas import (
    DeliveryOut,
    LinkOut,
    LinkUpdate,
    NetworkOut,
    NodeOut,
    SaeCredentials,
    SaeOut,
)
from slices_blueprint.quotas.service import QuotaExceeded
from slices_blueprint.reservations import binding as reservations
from slices_blueprint.reservations.models import Reservation
from slices_blueprint.resources.service import (
    Extension,
    experiment_cap,
    extend_expiry,
    follow_reservation,
    requested_expiry,
)

log = structlog.get_logger(__name__)
ID_TYPE = "qkdnet"
STATUS_KEY_SIZE = 256
PORT_LOCK = "slices-blueprint:qkd-kme-ports"
DEVICE_LOCK = "slices-blueprint:qkd-devices"
DEVICE_LINK = "device"  # a link's state when real devices make its key


def kme_public_host(settings: Settings) -> str:
    return settings.qkd_kme_public_host or settings.qkd_kme_host


def kme_url(node: QkdNode, settings: Settings) -> str:
    host = kme_public_host(settings)
    return f"https://{f'[{host}]' if ':' in host else host}:{node.kme_port}"


def link_name(link: QkdLink, nodes: dict[uuid.UUID, QkdNode]) -> str:
    return f"{nodes[link.node_a_id].name}-{nodes[link.node_b_id].name}"


async def network_out(session: AsyncSession, settings: Settings, network: QkdNetwork) -> NetworkOut:
    nodes = {n.id: n for n in await session.scalars(
        select(QkdNode).where(QkdNode.network_id == network.id).order_by(QkdNode.name))}
    saes = await session.scalars(select(QkdSae).where(QkdSae.network_id == network.id).order_by(QkdSae.sae_id))
    links = await session.scalars(select(QkdLink).where(QkdLink.network_id == network.id).order_by(QkdLink.id))
    machines = binding.bindings(network)
    deliveries = await binding.deliveries(session, settings, network)
    now = utcnow()
    devices = {n["name"]: n.get("device") for n in network.description.get("nodes", [])}
    return NetworkOut(
        id=format_id(ID_TYPE, settings.site_id, network.id), name=network.name,
        experiment_id=network.experiment_id, project_id=network.project_id, status=network.status,
        status_reason=await status_reason(session, settings, network),
        expires_at=network.expires_at, created_at=network.created_at,
        reservation_id=format_id("reservation", settings.site_id, network.reservation_id) if network.reservation_id
        else None,
        nodes=[NodeOut(name=n.name, kme_id=n.kme_id, kme_url=kme_url(n, settings), device=devices.get(n.name))
               for n in nodes.values()],
        saes=[SaeOut(sae_id=s.sae_id, node=nodes[s.node_id].name, kme_url=kme_url(nodes[s.node_id], settings),
                     credentials_downloaded=s.downloaded_at is not None, machine=machines.get(s.sae_id),
                     delivery=_delivery_out(deliveries.get(s.sae_id))) for s in saes],
        links=[LinkOut(
            name=link_name(link, nodes), between=(nodes[link.node_a_id].name, nodes[link.node_b_id].name),
            parameters=link.parameters, state=link.state, state_reason=link.state_reason,
            secret_key_rate_bps=link.rate_bps, qber=link.qber,
            stored_key_count=keypool.stored_key_count(link, STATUS_KEY_SIZE, now),
            max_key_count=link.max_key_count, delivered_keys=link.delivered_keys,
            emulated=link.state != DEVICE_LINK) for link in links],
    )


def _delivery_out(delivery: binding.Delivery | None) -> DeliveryOut | None:
    if delivery is None:
        return None
    return DeliveryOut(state=delivery.state, note=delivery.note, resource_id=delivery.resource_id,
                       delivered_at=delivery.at)


def scoped_query(caller: Caller) -> Select[tuple[QkdNetwork]]:
    """Networks the caller may see (``Caller.visible``)."""
    return caller.visible(select(QkdNetwork), experiment_id=QkdNetwork.experiment_id,
                          project_id=QkdNetwork.project_id, created_by=QkdNetwork.created_by)


async def list_networks(session: AsyncSession, caller: Caller, *, include_deleted: bool) -> list[QkdNetwork]:
    query = scoped_query(caller).order_by(QkdNetwork.id)
    if not include_deleted:
        query = query.where(QkdNetwork.status != "deleted")
    return list(await session.scalars(query))


async def get_network(session: AsyncSession, caller: Caller, network_id: uuid.UUID, *,
                      write: bool = False) -> QkdNetwork:
    """One network the caller may see (and change, with ``write``: only its experiment's);
    another experiment's is "no such QKD network", exactly as a missing one."""
    query = scoped_query(caller).where(QkdNetwork.id == network_id)
    network = await session.scalar(query.with_for_update() if write else query)
    if network is None:
        raise NotFound("no such QKD network")
    if write:
        caller.require_experiment()
    return network


async def _admit(session: AsyncSession, settings: Settings, project_id: str, kmes: int) -> None:
    """Refuse (403) KMEs past the project's limit; the project's row is locked first, so
    concurrent requests of one project are counted one after another."""
    await session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    used = await session.scalar(
        select(func.count(QkdNode.id)).join(QkdNetwork, QkdNetwork.id == QkdNode.network_id)
        .where(QkdNetwork.project_id == project_id, QkdNetwork.status == "active")) or 0
    allowed = settings.qkd_max_kmes_per_project
    if used + kmes > allowed:
        raise QuotaExceeded(f"project {project_id} is over its QKD quota: {used} KMEs used + {kmes} "
                            f"requested > {allowed} allowed (qkd_max_kmes_per_project)",
                            quota=[{"limit": "qkd_kmes", "used": used, "requested": kmes, "allowed": allowed}])


def _check_devices(settings: Settings, description: NetworkDescription) -> list[tuple[int, str]]:
    """The devices the description's nodes name, (node index, device); one this site does
    not have is refused (422)."""
    wanted = [(i, n.device) for i, n in enumerate(description.nodes) if n.device]
    for i, device in wanted:
        if device not in settings.qkd_devices:
            offered = ", ".join(sorted(settings.qkd_devices)) or "none"
            raise Invalid(f"nodes.{i}.device: this site has no QKD device {device!r} (it has: {offered})")
    return wanted


async def _claim_devices(session: AsyncSession, settings: Settings, description: NetworkDescription) -> None:
    """Refuse a device this site does not have, or one a live network uses already (a device
    serves one network at a time; claims are serialised by an advisory lock)."""
    wanted = _check_devices(settings, description)
    if not wanted:
        return
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(DEVICE_LOCK))))
    node = func.jsonb_array_elements(QkdNetwork.description["nodes"]).table_valued(column("value", JSONB)).alias("node")
    busy = await session.scalars(
        select(node.c.value["device"].astext).select_from(QkdNetwork).join(node, true())
        .where(QkdNetwork.status == "active", node.c.value["device"].astext.in_([d for _, d in wanted])))
    taken = sorted(set(busy))
    if taken:
        raise Conflict(f"QKD device {', '.join(taken)} is in use by another live network; "
                       "try again once it is deleted")


async def _free_ports(session: AsyncSession, settings: Settings, count: int) -> list[int]:
    """``count`` ports of the KME range no live KME listens on (allocations are serialised
    by a transaction-scoped advisory lock)."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(PORT_LOCK))))
    used = set(await session.scalars(select(QkdNode.kme_port).where(QkdNode.kme_host == settings.qkd_kme_host)))
    low, high = settings.qkd_kme_ports
    free = [p for p in range(low, high + 1) if p not in used][:count]
    if len(free) < count:
        raise ServiceUnavailable(f"no free KME port left in {low}-{high}: ask the operator to widen qkd_kme_ports")
    return free


async def performance_of(parameters: LinkParameters) -> LinkPerformance:
    """The link's rate and QBER, computed off the event loop (up to half a second)."""
    return await asyncio.to_thread(link_performance, parameters)


def _apply_performance(link: QkdLink, performance: LinkPerformance) -> None:
    link.rate_bps = performance.secret_key_rate_bps if performance.generating else 0.0
    link.qber = performance.qber
    link.state = "generating" if performance.generating else "stopped"
    link.state_reason = performance.reason


async def create_network(session: AsyncSession, settings: Settings, caller: Caller,
                         description: NetworkDescription) -> QkdNetwork:
    """Record a network with its CA, KMEs, SAE certificates and links, in one transaction;
    inside a reservation that has not started, only its CA and description: it is pending
    until the reservation's clock starts it (:func:`start_networks`)."""
    experiment = caller.require_experiment()
    cap = experiment_cap(settings, experiment)
    expires_at = requested_expiry(settings, experiment, description.expires_at)
    reservation = await _reservation(session, settings, caller, description.reservation_id)
    expires_at = reservations.expiry(reservation, expires_at, description.expires_at is not None, cap)
    waits = reservation is not None and not reservations.started(reservation)
    if waits:
        _check_devices(settings, description)
    else:
        await _admit(session, settings, experiment.project_id, len(description.nodes))
        await _claim_devices(session, settings, description)
    ca = pki.new_authority(f"{description.name} QKD network CA", valid_for=_certificates_life(cap))
    network = QkdNetwork(id=new_uuid(), experiment_id=experiment.id, project_id=experiment.project_id,
                         created_by=caller.user.id if caller.user else None, name=description.name,
                         status=PENDING if waits else ACTIVE, description=description.model_dump(mode="json"),
                         ca_cert_pem=ca.cert_pem.decode(), ca_key=secret_box(settings).encrypt(ca.key_pem),
                         expires_at=expires_at, reservation_id=reservation.id if reservation else None)
    session.add(network)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a live QKD network named {description.name!r} exists in this experiment") from None
    if not waits:
        await _build(session, settings, network, description, ca, cap)
    await record(session, actor=caller.actor, action="qkd_network.create", outcome="ok",
                 resource_id=network.id, experiment_id=experiment.id, project_id=experiment.project_id,
                 name=description.name, nodes=len(description.nodes), links=len(description.links),
                 reservation=description.reservation_id, status=network.status)
    return network


def _certificates_life(cap: dt.datetime) -> dt.timedelta:
    return cap - utcnow() + dt.timedelta(days=1)  # certificates outlive any extension


async def _build(session: AsyncSession, settings: Settings, network: QkdNetwork, description: NetworkDescription,
                 ca: pki.Issued, cap: dt.datetime) -> None:
    """Make the network's KMEs (on free ports), SAE certificates and links."""
    box = secret_box(settings)
    valid_for = _certificates_life(cap)
    network_id, now = network.id, utcnow()
    ports = await _free_ports(session, settings, len(description.nodes))
    public_host = kme_public_host(settings)
    nodes: dict[str, QkdNode] = {}
    for spec, port in zip(description.nodes, ports, strict=True):
        kme_id = f"kme-{spec.name}-{network_id.hex[-8:]}"
        hosts = sorted({public_host, settings.qkd_kme_host, binding.guest_hostname(kme_id)})
        server = pki.issue_kme_certificate(ca, kme_id, hosts=hosts, valid_for=valid_for)
        nodes[spec.name] = QkdNode(id=new_uuid(), network_id=network_id, name=spec.name, kme_id=kme_id,
                                   kme_host=settings.qkd_kme_host, kme_port=port,
                                   server_cert_pem=server.cert_pem.decode(), server_key=box.encrypt(server.key_pem))
    session.add_all(nodes.values())
    await session.flush()
    for spec in description.nodes:
        for sae in spec.sae_specs():
            issued = pki.issue_sae_certificate(ca, sae.id, valid_for=valid_for)
            session.add(QkdSae(network_id=network_id, node_id=nodes[spec.name].id, sae_id=sae.id,
                               cert_pem=issued.cert_pem.decode(), key=box.encrypt(issued.key_pem)))
    devices = {n.name: n.device for n in description.nodes}
    for spec in description.links:
        a, b = spec.between
        link = QkdLink(network_id=network_id, node_a_id=nodes[a].id, node_b_id=nodes[b].id,
                       secret=box.encrypt(os.urandom(32)), max_key_count=spec.max_key_count,
                       key_size=STATUS_KEY_SIZE, stored_bits=0, stored_at=now, next_index=0, delivered_keys=0)
        if devices[a]:
            link.parameters, link.rate_bps, link.qber, link.state = {}, 0.0, 0.0, DEVICE_LINK
            link.state_reason = f"real QKD link between devices {devices[a]} and {devices[b]}: they make the key"
        else:
            parameters = spec.parameters()
            link.parameters = parameters.model_dump(mode="json")
            _apply_performance(link, await performance_of(parameters))
        session.add(link)
    await session.flush()


async def _reservation(session: AsyncSession, settings: Settings, caller: Caller,
                       reservation_id: str | None) -> Reservation | None:
    """The reservation a new network runs inside, if it names one."""
    if reservation_id is None:
        return None
    return await reservations.bindable(
        session, caller, body_id(reservation_id, "reservation", "reservation_id"), settings.site_id)


async def start_networks(session: AsyncSession, settings: Settings, reservation: Reservation) -> list[str]:
    """Make the networks that waited for ``reservation``'s start (it has started). One that
    cannot be made now (the project's KMEs, a device in use, no free port) fails with the
    reason, as an audit event; the others are made all the same."""
    pending = list(await session.scalars(
        select(QkdNetwork).where(QkdNetwork.reservation_id == reservation.id, QkdNetwork.status == PENDING)
        .order_by(QkdNetwork.name).with_for_update()))
    made = []
    for network in pending:
        fields = {"resource_id": network.id, "experiment_id": network.experiment_id,
                  "project_id": network.project_id, "name": network.name}
        description = NetworkDescription.model_validate(network.description)
        ca = pki.Issued(cert_pem=network.ca_cert_pem.encode(),
                        key_pem=secret_box(settings).decrypt(network.ca_key))
        experiment = await session.get(Experiment, network.experiment_id)
        try:
            async with session.begin_nested():
                await _admit(session, settings, network.project_id, len(description.nodes))
                await _claim_devices(session, settings, description)
                await _build(session, settings, network, description, ca, experiment_cap(settings, experiment))
        except ProblemError as exc:
            network.status = FAILED
            log.warning("qkd.network_start_failed", network_id=str(fields["resource_id"]), reason=exc.detail)
            await record(session, actor=reservations.CLOCK, action="qkd_network.start", outcome="error",
                         message=exc.detail, **fields)
            continue
        network.status = ACTIVE
        log.info("qkd.network_started", network_id=str(fields["resource_id"]), name=fields["name"])
        await record(session, actor=reservations.CLOCK, action="qkd_network.start", outcome="ok", **fields)
        made.append(f"qkd network {fields['name']}")
    return made


async def status_reason(session: AsyncSession, settings: Settings, network: QkdNetwork) -> str | None:
    """Why a pending network waits, or why a failed one failed."""
    if network.status == PENDING and network.reservation_id is not None:
        reservation = await session.get(Reservation, network.reservation_id)
        return reservations.waiting_reason(reservation, settings.site_id) if reservation else None
    if network.status == FAILED:
        return await session.scalar(
            select(Event.message).where(Event.resource_id == network.id, Event.action == "qkd_network.start",
                                        Event.outcome == "error").order_by(Event.id.desc()).limit(1))
    return None


async def bound_networks(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The live networks running inside each of these reservations."""
    found: dict[uuid.UUID, list[str]] = {}
    for reservation_id, name in await session.execute(
            select(QkdNetwork.reservation_id, QkdNetwork.name)
            .where(QkdNetwork.reservation_id.in_(ids), QkdNetwork.status.in_(LIVE)).order_by(QkdNetwork.name)):
        found.setdefault(reservation_id, []).append(f"qkd network {name}")
    return found


async def release_networks(session: AsyncSession, queue: procrastinate.App, reservation: Reservation,
                           actor: str) -> list[str]:
    """Delete the networks running inside ``reservation`` (it ended or was cancelled)."""
    networks = list(await session.scalars(
        select(QkdNetwork).where(QkdNetwork.reservation_id == reservation.id, QkdNetwork.status.in_(LIVE))
        .order_by(QkdNetwork.name).with_for_update()))
    for network in networks:
        await delete_network(session, network, actor)
    return [f"qkd network {n.name}" for n in networks]


async def follow_networks(session: AsyncSession, settings: Settings, reservation: Reservation,
                          old_end: dt.datetime, actor: str) -> list[str]:
    """The live networks inside ``reservation`` that expired at its old end expire at its new end."""
    networks = list(await session.scalars(
        select(QkdNetwork).where(QkdNetwork.reservation_id == reservation.id, QkdNetwork.status.in_(LIVE),
                                 QkdNetwork.expires_at == old_end).order_by(QkdNetwork.name).with_for_update()))
    moved = await follow_reservation(session, settings, networks, reservation, old_end, actor,
                                     action="qkd_network.extend")
    return [f"qkd network {n.name}" for n in moved]


async def delete_network(session: AsyncSession, network: QkdNetwork, actor: str) -> None:
    """Mark the network deleted and drop its KMEs, pools and keys (its KMEs stop serving)."""
    if network.status == "deleted":
        return
    network.status, network.deleted_at = "deleted", utcnow()
    await session.execute(delete(QkdNode).where(QkdNode.network_id == network.id))
    await record(session, actor=actor, action="qkd_network.delete", outcome="ok", resource_id=network.id,
                 experiment_id=network.experiment_id, project_id=network.project_id, name=network.name)


async def extend(session: AsyncSession, settings: Settings, caller: Caller, network: QkdNetwork,
                 requested: dt.datetime) -> Extension:
    """Move the network's expiry later, never earlier (as resources': ``grant_extension``)."""
    if network.status != "active":
        raise Conflict(f"QKD network {network.name!r} is {network.status}")
    return await extend_expiry(session, settings, caller, network, requested, action="qkd_network.extend")


async def _link_by_name(session: AsyncSession, network: QkdNetwork, name: str) -> tuple[QkdLink, str]:
    nodes = {n.id: n for n in await session.scalars(select(QkdNode).where(QkdNode.network_id == network.id))}
    links = await session.scalars(select(QkdLink).where(QkdLink.network_id == network.id))
    by_name = {}
    for link in links:
        a, b = nodes[link.node_a_id].name, nodes[link.node_b_id].name
        by_name[f"{a}-{b}"] = by_name[f"{b}-{a}"] = link
    if name not in by_name:
        raise NotFound(f"no link {name!r} in QKD network {network.name!r} "
                       f"(links: {', '.join(sorted({link_name(v, nodes) for v in by_name.values()}))})")
    return by_name[name], link_name(by_name[name], nodes)


async def update_link(session: AsyncSession, network: QkdNetwork, name: str, update: LinkUpdate,
                      actor: str) -> None:
    """Change some of a link's parameters; its rate and QBER follow at once (the pool keeps
    what it made so far). A link that stops or starts generating is an audit event."""
    if network.status != "active":
        raise Conflict(f"QKD network {network.name!r} is {network.status}")
    link, canonical = await _link_by_name(session, network, name)
    if link.state == DEVICE_LINK:
        raise Conflict(f"link {canonical} joins real QKD devices: its physics are theirs, not settable")
    (link,) = await keypool.lock_links(session, [link])
    changes = update.model_dump(exclude_none=True)
    try:
        parameters = LinkParameters.model_validate({**link.parameters, **changes})
    except ValueError as exc:
        raise Invalid(f"link {canonical}: {exc}") from None
    keypool.refill(link, utcnow())
    was = link.state
    link.parameters = parameters.model_dump(mode="json")
    _apply_performance(link, await performance_of(parameters))
    log.info("qkd.link.updated", network_id=str(network.id), link=canonical, changes=changes,
             state=link.state, rate_bps=link.rate_bps, qber=link.qber)
    await record(session, actor=actor, action="qkd_link.update", outcome="ok", resource_id=network.id,
                 experiment_id=network.experiment_id, project_id=network.project_id, link=canonical,
                 changes=changes, state=link.state, qber=round(link.qber, 4), rate_bps=round(link.rate_bps, 1))
    if link.state != was:
        await record(session, actor=actor, action=f"qkd_link.{'started' if link.state == 'generating' else 'stopped'}",
                     outcome="ok", resource_id=network.id, experiment_id=network.experiment_id,
                     project_id=network.project_id, link=canonical, message=link.state_reason)


async def take_credentials(session: AsyncSession, settings: Settings, network: QkdNetwork, sae_id: str,
                           actor: str) -> SaeCredentials:
    """An SAE's certificate, private key, CA and KME URL; the key is answered once, then erased."""
    sae = await session.scalar(select(QkdSae).where(QkdSae.network_id == network.id, QkdSae.sae_id == sae_id)
                               .with_for_update())
    if sae is None:
        raise NotFound(f"no SAE {sae_id!r} in QKD network {network.name!r}")
    machine = binding.bindings(network).get(sae_id)
    if machine is not None:
        raise Conflict(f"SAE {sae_id!r} is bound to machine {machine!r}: its credentials are placed in that "
                       f"machine only (at {binding.credentials_dir(sae_id)}/), never downloaded")
    if sae.key is None:
        raise Conflict(f"the credentials of SAE {sae_id!r} were downloaded already "
                       f"({sae.downloaded_at.isoformat() if sae.downloaded_at else 'earlier'}); "
                       "they are handed out once only")
    node = await session.get(QkdNode, sae.node_id)
    assert node is not None
    key_pem = secret_box(settings).decrypt(sae.key).decode()
    sae.key, sae.downloaded_at = None, utcnow()
    await record(session, actor=actor, action="qkd_sae.credentials_downloaded", outcome="ok",
                 resource_id=network.id, experiment_id=network.experiment_id, project_id=network.project_id,
                 sae_id=sae_id)
    return SaeCredentials(sae_id=sae_id, kme_url=kme_url(node, settings), kme_id=node.kme_id,
                          certificate_pem=sae.cert_pem, private_key_pem=key_pem,
                          ca_certificate_pem=network.ca_cert_pem)


async def reap_expired(session: AsyncSession) -> int:
    """Delete the networks whose expiry has passed (but those expiring at their reservation's
    end, which its clock deletes); answers how many."""
    expired = list(await session.scalars(
        select(QkdNetwork).where(QkdNetwork.status != DELETED, QkdNetwork.expires_at <= func.now(),
                                 ~reservations.ended_by_the_clock(QkdNetwork.reservation_id, QkdNetwork.expires_at))
        .with_for_update(skip_locked=True)))
    for network in expired:
        await delete_network(session, network, actor="reaper")
    return len(expired)

