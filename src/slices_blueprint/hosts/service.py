"""MicroVM hosts: registration, heartbeats, drain/remove, placement, lost-host detection.

A host is ``active`` (takes new VMs), ``draining`` (keeps its VMs, takes no new ones) or
``lost`` (missed heartbeats for ``host_lost_after_seconds``; back to ``active`` with its
next heartbeat unless an admin drained it). Placement takes active, fresh hosts with room
for the VM's vCPUs and memory and picks the one with the most memory left after placing
(spreading load). It books the VM's capacity on the host (a ``HostBooking``) under the hosts'
row locks, so concurrent placements see it; a booking lasts until the host's heartbeat lists
the VM (the agent's reported use then counts it), the create fails, or it expires.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from collections import defaultdict
from dataclasses import dataclass

import structlog
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Conflict, NotFound
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import get_or_404, utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.hosts.models import Host, HostBooking
from slices_blueprint.hosts.schemas import Capacity, Heartbeat, HostOut, HostRegistration
from slices_blueprint.resources.models import ComputeResource

log = structlog.get_logger(__name__)

ACTIVE, DRAINING, LOST = "active", "draining", "lost"
BOOKING_TTL = dt.timedelta(minutes=10)  # longer than any create (boot timeout 180 s, retries)


@dataclass(frozen=True)
class HostPolicy:
    """The host settings (``Settings.host_*``) the hosts domain works with."""

    registration_secret: str | None
    heartbeat_seconds: int
    lost_after_seconds: int

    @classmethod
    def of(cls, settings: Settings) -> HostPolicy:
        secret = settings.host_registration_secret
        return cls(
            registration_secret=secret.get_secret_value() if secret else None,
            heartbeat_seconds=settings.host_heartbeat_seconds,
            lost_after_seconds=settings.host_lost_after_seconds,
        )


MICROVM = "microvm"  # the flavor type whose resources run on these hosts


async def resources_on_hosts(
    session: AsyncSession, host_id: uuid.UUID | None = None
) -> dict[uuid.UUID, list[ComputeResource]]:
    """The live microVM resources placed on each host (or on ``host_id`` only), by host id:
    what runs where."""
    query = (select(ComputeResource)
             .where(ComputeResource.provider == MICROVM, ComputeResource.status != "deleted",
                    ComputeResource.provider_resource_id.is_not(None))
             .order_by(ComputeResource.friendly_name))
    if host_id is not None:
        query = query.where(ComputeResource.provider_resource_id.startswith(f"{host_id}/", autoescape=True))
    rows = await session.scalars(query)
    placed: dict[uuid.UUID, list[ComputeResource]] = defaultdict(list)
    for resource in rows:
        host_id = (resource.provider_resource_id or "").split("/", 1)[0]
        try:
            placed[uuid.UUID(host_id)].append(resource)
        except ValueError:
            log.warning("hosts.unplaced_resource", resource_id=str(resource.id))
    return placed


def host_out(host: Host, site: str, resources: list[ComputeResource] | None = None) -> HostOut:
    return HostOut(
        id=format_id("host", site, host.id), name=host.name, url=host.url, status=host.status,
        vmm=host.vmm, network_mode=host.network_mode, vcpus=host.vcpus,
        vcpus_used=host.vcpus_used, memory_mib=host.memory_mib,
        memory_used_mib=host.memory_used_mib, disk_free_mib=host.disk_free_mib,
        vms_running=host.vms_running, last_heartbeat_at=host.last_heartbeat_at,
        labels=host.labels or {}, metrics=host.metrics or {},
        resources=[format_id("resource", site, r.id) for r in resources or []],
    )


def secret_matches(presented: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def host_token(settings: Settings, host: Host) -> str:
    """The decrypted bearer token the service calls this host's agent with."""
    if host.token_ciphertext is None:
        raise NotFound(f"host {host.name} has no token; it must register again")
    return secret_box(settings).decrypt(host.token_ciphertext).decode()


def _apply_capacity(host: Host, capacity: Capacity) -> None:
    for field in Capacity.model_fields:
        setattr(host, field, getattr(capacity, field))


async def register(session: AsyncSession, settings: Settings, body: HostRegistration) -> Host:
    """Create the host, or update it when one of that name registers again (new token)."""
    host = await session.scalar(select(Host).where(Host.name == body.name).with_for_update())
    if host is None:
        host = Host(name=body.name, url=body.url, status=ACTIVE, labels={}, metrics={})
        session.add(host)
    host.url, host.vmm, host.network_mode = body.url, body.vmm, body.network_mode
    host.labels = dict(body.labels)
    host.token_ciphertext = secret_box(settings).encrypt(body.token.get_secret_value().encode())
    _apply_capacity(host, body)
    host.last_heartbeat_at = utcnow()
    if host.status == LOST:
        host.status = ACTIVE
    await session.flush()
    log.info("hosts.registered", host_id=str(host.id), name=host.name, url=host.url)
    return host


async def authenticate_heartbeat(
    session: AsyncSession, settings: Settings, host_id: uuid.UUID, presented: str
) -> Host | None:
    host = await session.get(Host, host_id, with_for_update=True)
    if host is None or host.token_ciphertext is None:
        return None
    return host if secret_matches(presented, host_token(settings, host)) else None


async def heartbeat(session: AsyncSession, host: Host, body: Heartbeat) -> Host:
    """Store the reported capacity and metrics; drop the bookings the report now covers."""
    _apply_capacity(host, body)
    host.metrics = body.metrics
    reported = list((body.metrics.get("vms") or {}).keys())
    await session.execute(delete(HostBooking).where(
        HostBooking.host_id == host.id,
        or_(HostBooking.vm_id.in_(reported), HostBooking.booked_at < utcnow() - BOOKING_TTL),
    ))
    host.last_heartbeat_at = utcnow()
    if host.status == LOST:
        host.status = ACTIVE
        log.info("hosts.back", host_id=str(host.id), name=host.name)
    return host


async def get(session: AsyncSession, host_id: uuid.UUID) -> Host:
    return await get_or_404(session, Host, host_id, "host")


async def list_hosts(session: AsyncSession) -> list[Host]:
    return list(await session.scalars(select(Host).order_by(Host.name)))


async def set_status(session: AsyncSession, host_id: uuid.UUID, status: str) -> Host:
    host = await get(session, host_id)
    host.status = status
    log.info("hosts.status_changed", host_id=str(host_id), status=status)
    return host


async def remove(session: AsyncSession, host_id: uuid.UUID, site: str, force: bool = False) -> None:
    """Forget a host. One that still runs live resources is refused (their VMs would go on
    running, untracked, until someone noticed) unless ``force``: they are then the
    reconciler's to mark as vanished."""
    host = await get(session, host_id)
    placed = (await resources_on_hosts(session, host_id)).get(host_id, [])
    if placed and not force:
        names = ", ".join(f"{r.friendly_name} ({format_id('resource', site, r.id)})" for r in placed)
        raise Conflict(f"host {host.name} still runs {len(placed)} live resource(s): {names}; "
                       "delete them first, or remove the host with force=true")
    await session.delete(host)
    log.info("hosts.removed", host_id=str(host_id), name=host.name, forced_over=len(placed))


async def mark_lost(session: AsyncSession, settings: Settings) -> list[str]:
    """Mark active hosts whose last heartbeat is too old as lost; answer their names."""
    cutoff = utcnow() - dt.timedelta(seconds=HostPolicy.of(settings).lost_after_seconds)
    rows = await session.execute(
        update(Host).where(Host.status == ACTIVE, Host.last_heartbeat_at < cutoff)
        .values(status=LOST).returning(Host.name)
    )
    names = list(rows.scalars())
    for name in names:
        log.warning("hosts.lost", name=name)
    return names


class NoCapacity(Exception):
    """No usable host has room; ``hosts_known`` tells whether any host is registered."""

    def __init__(self, message: str, hosts_known: bool) -> None:
        super().__init__(message)
        self.hosts_known = hosts_known


async def _booked(session: AsyncSession) -> dict[uuid.UUID, tuple[int, int, int]]:
    """Per host: vCPUs, MiB and VMs booked by placements its heartbeats do not show yet."""
    rows = await session.execute(
        select(HostBooking.host_id, func.sum(HostBooking.vcpus), func.sum(HostBooking.memory_mib),
               func.count())
        .where(HostBooking.booked_at >= utcnow() - BOOKING_TTL)
        .group_by(HostBooking.host_id)
    )
    return {host_id: (int(vcpus), int(memory), int(count)) for host_id, vcpus, memory, count in rows}


async def place(
    session: AsyncSession, settings: Settings, vm_id: str, vcpus: int, memory_mib: int
) -> Host:
    """Choose a host for VM ``vm_id`` and book its vCPUs and memory there."""
    fresh_after = utcnow() - dt.timedelta(seconds=HostPolicy.of(settings).lost_after_seconds)
    hosts = list(await session.scalars(select(Host).order_by(Host.id).with_for_update()))
    await release(session, vm_id)  # a retried create places afresh
    booked = await _booked(session)

    def free(h: Host) -> tuple[int, int, int]:
        b_vcpus, b_memory, b_vms = booked.get(h.id, (0, 0, 0))
        return (h.vcpus - h.vcpus_used - b_vcpus, h.memory_mib - h.memory_used_mib - b_memory,
                h.vms_running + b_vms)

    usable = [h for h in hosts if h.status == ACTIVE and h.last_heartbeat_at
              and h.last_heartbeat_at >= fresh_after]
    fitting = [h for h in usable if free(h)[0] >= vcpus and free(h)[1] >= memory_mib]
    if not fitting:
        raise NoCapacity(
            f"no microVM host has room for {vcpus} vCPU / {memory_mib} MiB "
            f"({len(usable)} usable of {len(hosts)} registered)",
            hosts_known=bool(hosts),
        )
    host = max(fitting, key=lambda h: (free(h)[1] - memory_mib, -free(h)[2], h.name))
    await session.execute(insert(HostBooking).values(
        vm_id=vm_id, host_id=host.id, vcpus=vcpus, memory_mib=memory_mib, booked_at=utcnow()))
    log.info("hosts.placed", host_id=str(host.id), name=host.name, vm_id=vm_id, vcpus=vcpus,
             memory_mib=memory_mib)
    return host


async def release(session: AsyncSession, vm_id: str) -> None:
    """Drop the booking of a VM whose create failed or that was deleted."""
    await session.execute(delete(HostBooking).where(HostBooking.vm_id == vm_id))
