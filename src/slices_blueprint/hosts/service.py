"""MicroVM hosts: enrolment, registration, heartbeats, drain/remove, placement, lost hosts.

Identity: every host enrols once with a one-time token an admin issued for its name
(:func:`create_enrolment`; stored as a SHA-256, expiring). At enrolment the agent hands over
its own bearer token (kept encrypted) and its TLS certificate (pinned, see ``pinning.py``).
Afterwards only that host's token may register the name again (new URL, certificate or
token); anyone else is refused, and a second host under a taken name is a conflict.

A host is ``active`` (takes new VMs), ``draining`` (keeps its VMs, takes no new ones) or
``lost`` (missed heartbeats for ``host_lost_after_seconds``; back to ``active`` with its
next heartbeat unless an admin drained it). Placement takes active, fresh hosts with room
for the VM's vCPUs and memory, and for its disk in the data directory (as the host's last
heartbeat reported it), and picks the one with the most memory left after placing (spreading
load); it leaves alone the capacity that the registered capacity holders (the reservations
active now, wired in ``domains.py``) keep for other VMs. It books the VM's vCPUs and memory on
the host (a ``HostBooking``) under the hosts' row locks, so concurrent placements see them; a
booking counts until the host's heartbeat lists the VM (the agent's reported use then counts
it: the booking is confirmed and stays as the record of where the VM was placed), the create
fails, or it expires. Disk is not booked: the next heartbeat reports what a VM took.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import and_, column, delete, func, or_, select, table, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.agent.protocol import (
    Capacity,
    Heartbeat,
    HostRegistration,
    split_vm_ref,
    vm_ref,
)
from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Conflict, Forbidden
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import get_or_404, utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.events import service as events
from slices_blueprint.hosts.models import Host, HostBooking, HostEnrolment
from slices_blueprint.hosts.pinning import fingerprint
from slices_blueprint.hosts.schemas import EnrolmentOut, HostOut

log = structlog.get_logger(__name__)

ACTIVE, DRAINING, LOST = "active", "draining", "lost"
BOOKING_TTL = dt.timedelta(minutes=10)  # longer than any create (boot timeout 180 s, retries)
ENROLMENT_PREFIX = "sbenrol_"  # tells an enrolment token from a host token or a JWT


@dataclass(frozen=True)
class HostPolicy:
    """The host settings (``Settings.host_*``) the hosts domain works with."""

    heartbeat_seconds: int
    lost_after_seconds: int
    enrolment_ttl: dt.timedelta

    @classmethod
    def of(cls, settings: Settings) -> HostPolicy:
        return cls(
            heartbeat_seconds=settings.host_heartbeat_seconds,
            lost_after_seconds=settings.host_lost_after_seconds,
            enrolment_ttl=dt.timedelta(hours=settings.host_enrolment_ttl_hours),
        )


class HostUnusable(Exception):
    """The service cannot call this host: no readable token or no pinned certificate."""


MICROVM = "microvm"  # the flavor type whose resources run on these hosts


@dataclass(frozen=True)
class PlacedResource:
    """A live resource running on a host."""

    id: uuid.UUID
    friendly_name: str


# The resources domain's table, read by name: hosts/ does not import resources/ (which
# depends on hosts/ through its drivers); the columns read are part of its migrations.
_resources = table("compute_resources", column("id"), column("friendly_name"), column("provider"),
                   column("status"), column("provider_resource_id"))


async def resources_on_hosts(
    session: AsyncSession, host_id: uuid.UUID | None = None
) -> dict[uuid.UUID, list[PlacedResource]]:
    """The live microVM resources placed on each host (or on ``host_id`` only), by host id:
    what runs where."""
    ref = _resources.c.provider_resource_id
    query = (select(_resources.c.id, _resources.c.friendly_name, ref)
             .where(_resources.c.provider == MICROVM, _resources.c.status != "deleted",
                    ref.is_not(None))
             .order_by(_resources.c.friendly_name))
    if host_id is not None:
        query = query.where(ref.startswith(vm_ref(host_id, ""), autoescape=True))
    placed: dict[uuid.UUID, list[PlacedResource]] = defaultdict(list)
    for resource_id, name, provider_resource_id in await session.execute(query):
        try:
            placed[split_vm_ref(provider_resource_id)[0]].append(PlacedResource(resource_id, name))
        except ValueError:
            log.warning("hosts.unplaced_resource", resource_id=str(resource_id))
    return placed


def host_out(host: Host, site: str, resources: list[PlacedResource] | None = None) -> HostOut:
    return HostOut(
        id=format_id("host", site, host.id), name=host.name, url=host.url,
        cert_sha256=host.cert_sha256, status=host.status,
        vmm=host.vmm, network_mode=host.network_mode, vcpus=host.vcpus,
        vcpus_used=host.vcpus_used, memory_mib=host.memory_mib,
        memory_used_mib=host.memory_used_mib, disk_free_mib=host.disk_free_mib,
        vms_running=host.vms_running, last_heartbeat_at=host.last_heartbeat_at,
        labels=host.labels or {}, metrics=host.metrics or {},
        resources=[format_id("resource", site, r.id) for r in resources or []],
    )


def secret_matches(presented: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def host_token(settings: Settings, host: Host) -> str:
    """The decrypted bearer token the service calls this host's agent with."""
    if host.token_ciphertext is None:
        raise HostUnusable(f"host {host.name} has no token; it must enrol again")
    try:
        return secret_box(settings).decrypt(host.token_ciphertext).decode()
    except ValueError as exc:
        raise HostUnusable(f"the token of host {host.name} cannot be decrypted with the "
                           "configured keys; it must enrol again") from exc


def agent_credentials(settings: Settings, host: Host) -> tuple[str, str]:
    """The host's token and pinned certificate (PEM), the two things a call to it needs."""
    if not (host.cert_pem and host.url.startswith("https://")):
        raise HostUnusable(f"host {host.name} has no pinned TLS certificate; its agent must "
                           "register again (upgrade it)")
    return host_token(settings, host), host.cert_pem


def _apply_capacity(host: Host, capacity: Capacity) -> None:
    for field in Capacity.model_fields:
        setattr(host, field, getattr(capacity, field))


async def create_enrolment(session: AsyncSession, settings: Settings, name: str, by: str,
                           replace: bool = False) -> EnrolmentOut:
    """A one-time enrolment token for host ``name`` (answered once, stored hashed); earlier
    unused tokens for that name stop working. A taken name needs ``replace``."""
    taken = await session.scalar(select(Host.id).where(Host.name == name))
    if taken is not None and not replace:
        raise Conflict(f"host {name} is already registered: remove it first, or enrol it "
                       "with replace to give it a new identity")
    await session.execute(delete(HostEnrolment).where(HostEnrolment.name == name,
                                                      HostEnrolment.used_at.is_(None)))
    token = ENROLMENT_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + HostPolicy.of(settings).enrolment_ttl
    session.add(HostEnrolment(name=name, token_sha256=_sha256(token), replace=replace,
                              expires_at=expires_at, created_by=by))
    await session.flush()
    await events.record(session, actor=by, action="hosts.enrolment_issued", outcome="ok",
                        name=name, replace=replace, expires_at=expires_at.isoformat())
    return EnrolmentOut(name=name, replace=replace, expires_at=expires_at, token=token)


async def claim_enrolment(session: AsyncSession, presented: str) -> HostEnrolment | None:
    """The valid (unused, unexpired) enrolment ``presented`` is the token of, if any."""
    if not presented.startswith(ENROLMENT_PREFIX):
        return None
    return await session.scalar(
        select(HostEnrolment).where(HostEnrolment.token_sha256 == _sha256(presented),
                                    HostEnrolment.used_at.is_(None),
                                    HostEnrolment.expires_at > utcnow())
        .with_for_update())


async def by_name(session: AsyncSession, name: str) -> Host | None:
    """The host called ``name`` (row-locked), if any."""
    return await session.scalar(select(Host).where(Host.name == name).with_for_update())


def owns(settings: Settings, host: Host, presented: str) -> bool:
    """Whether ``presented`` is this host's own token (an unreadable one matches nothing)."""
    try:
        return secret_matches(presented, host_token(settings, host))
    except HostUnusable:
        return False


async def enrol(session: AsyncSession, settings: Settings, enrolment: HostEnrolment,
                body: HostRegistration) -> Host:
    """Register a host with its enrolment (used up here)."""
    if enrolment.name != body.name:
        raise Forbidden(f"this enrolment token is for host {enrolment.name}, not {body.name}")
    host = await by_name(session, body.name)
    if host is not None and not enrolment.replace:
        raise Conflict(f"host {body.name} is already registered")
    enrolment.used_at = utcnow()
    await events.record(session, actor=f"host:{body.name}", action="hosts.enrolled",
                        outcome="ok", name=body.name, replaced=host is not None,
                        cert_sha256=fingerprint(body.cert_pem))
    return await register(session, settings, body, host)


async def register(session: AsyncSession, settings: Settings, body: HostRegistration,
                   host: Host | None = None) -> Host:
    """Create the host, or update ``host`` (the caller proved the right to): URL, pinned
    certificate, token, capacity."""
    sha256 = fingerprint(body.cert_pem)
    if host is None:
        host = Host(name=body.name, status=ACTIVE, labels={}, metrics={})
        session.add(host)
    elif host.cert_sha256 != sha256:
        log.info("hosts.certificate_changed", host_id=str(host.id), name=host.name,
                 old=host.cert_sha256, new=sha256)
    host.url, host.vmm, host.network_mode = body.url, body.vmm, body.network_mode
    host.cert_pem, host.cert_sha256 = body.cert_pem, sha256
    host.labels = dict(body.labels)
    host.token_ciphertext = secret_box(settings).encrypt(body.token.get_secret_value().encode())
    _apply_capacity(host, body)
    host.last_heartbeat_at = utcnow()
    if host.status == LOST:
        host.status = ACTIVE
    await session.flush()
    log.info("hosts.registered", host_id=str(host.id), name=host.name, url=host.url,
             cert_sha256=sha256)
    return host


async def rotate_tokens(session: AsyncSession, settings: Settings) -> int:
    """Re-encrypt every host token with the newest key; answers how many. Tokens no
    configured key can read are left (their hosts get 401 and must enrol again)."""
    box, rotated = secret_box(settings), 0
    for host in await session.scalars(select(Host).where(Host.token_ciphertext.is_not(None))):
        try:
            host.token_ciphertext = box.rotate(host.token_ciphertext)
        except ValueError:
            log.warning("hosts.token_unreadable", host_id=str(host.id), name=host.name)
            continue
        rotated += 1
    return rotated


async def authenticate_heartbeat(
    session: AsyncSession, settings: Settings, host_id: uuid.UUID, presented: str
) -> Host | None:
    host = await session.get(Host, host_id, with_for_update=True)
    if host is None:
        return None
    return host if owns(settings, host, presented) else None


async def heartbeat(session: AsyncSession, host: Host, body: Heartbeat) -> Host:
    """Store the reported capacity and metrics; confirm the bookings the report now covers
    (they stop counting), drop expired ones and confirmed ones whose VM is gone."""
    _apply_capacity(host, body)
    host.metrics = body.metrics
    reported = list((body.metrics.get("vms") or {}).keys())
    await session.execute(
        update(HostBooking)
        .where(HostBooking.host_id == host.id, HostBooking.vm_id.in_(reported),
               HostBooking.confirmed_at.is_(None))
        .values(confirmed_at=utcnow()))
    await session.execute(delete(HostBooking).where(
        HostBooking.host_id == host.id,
        or_(and_(HostBooking.confirmed_at.is_(None),
                 HostBooking.booked_at < utcnow() - BOOKING_TTL),
            and_(HostBooking.confirmed_at.is_not(None), HostBooking.vm_id.not_in(reported))),
    ))
    host.last_heartbeat_at = utcnow()
    if host.status == LOST:
        host.status = ACTIVE
        log.info("hosts.back", host_id=str(host.id), name=host.name)
    return host


HeartbeatListener = Callable[[AsyncSession, uuid.UUID, dict[str, Any]], Awaitable[object]]
"""Told of every accepted heartbeat: (the request's session, the host's id, its ``vms``)."""
_heartbeat_listeners: dict[str, HeartbeatListener] = {}


def register_heartbeat_listener(name: str, listener: HeartbeatListener) -> None:
    """Tell ``listener`` of every accepted heartbeat (wired at start-up by
    ``slices_blueprint.domains``; registering ``name`` again replaces its listener)."""
    _heartbeat_listeners[name] = listener


async def notify_heartbeat(session: AsyncSession, host: Host, body: Heartbeat) -> None:
    """Hand the heartbeat's VM metrics to every listener, in the heartbeat's transaction."""
    vms = body.metrics.get("vms") or {}
    for listener in _heartbeat_listeners.values():
        await listener(session, host.id, vms)


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
    """No usable host has room; ``hosts_known`` tells whether any host is registered,
    ``usable`` how many are live, ``expected`` the hosts that may become live soon (lost ones,
    silent ones, and names holding an unused enrolment: e.g. ``serve``'s local host starting),
    ``silent`` the status and last heartbeat (``None``: never) of each registered one among them,
    ``disk_full`` whether the live hosts with the vCPUs and memory all lack the disk (room an
    operator must make: waiting would not help)."""

    def __init__(self, message: str, hosts_known: bool, usable: int = 0,
                 expected: tuple[str, ...] = (),
                 silent: dict[str, tuple[str, dt.datetime | None]] | None = None,
                 disk_full: bool = False) -> None:
        super().__init__(message)
        self.hosts_known, self.usable, self.expected = hosts_known, usable, expected
        self.silent, self.disk_full = silent or {}, disk_full


def last_heard(at: dt.datetime | None) -> str:
    """When a host last sent a heartbeat, as messages say it."""
    return f"no heartbeat since {at:%Y-%m-%d %H:%M} UTC" if at else "no heartbeat ever"


DISK_HEADROOM_MIB = 64  # beyond the VM's disk: its seed disk, record and console log


@dataclass(frozen=True)
class HeldCapacity:
    """Host capacity a VM being placed must leave alone: held for other VMs (by the
    reservations active now), not yet used by them; ``by`` says who holds it."""

    vcpus: int = 0
    memory_mib: int = 0
    by: str = ""


CapacityHolder = Callable[[AsyncSession, str], Awaitable[HeldCapacity]]
"""Asked at each placement: (the placement's session, the VM's id) -> what it must leave."""
_capacity_holders: dict[str, CapacityHolder] = {}


def register_capacity_holder(name: str, holder: CapacityHolder) -> None:
    """Ask ``holder`` at each placement which capacity the VM must leave alone (wired at
    start-up by ``slices_blueprint.domains``; registering ``name`` again replaces it)."""
    _capacity_holders[name] = holder


async def _enrolling(session: AsyncSession) -> list[str]:
    """The names of hosts whose enrolment is issued and not used yet (nor expired)."""
    return list(await session.scalars(
        select(HostEnrolment.name).distinct()
        .where(HostEnrolment.used_at.is_(None), HostEnrolment.expires_at > utcnow())
        .order_by(HostEnrolment.name)))


async def _booked(session: AsyncSession) -> dict[uuid.UUID, tuple[int, int, int]]:
    """Per host: vCPUs, MiB and VMs booked by placements its heartbeats do not show yet."""
    rows = await session.execute(
        select(HostBooking.host_id, func.sum(HostBooking.vcpus), func.sum(HostBooking.memory_mib),
               func.count())
        .where(HostBooking.confirmed_at.is_(None), HostBooking.booked_at >= utcnow() - BOOKING_TTL)
        .group_by(HostBooking.host_id)
    )
    return {host_id: (int(vcpus), int(memory), int(count)) for host_id, vcpus, memory, count in rows}


async def place(
    session: AsyncSession, settings: Settings, vm_id: str, vcpus: int, memory_mib: int,
    disk_mib: int = 0,
) -> Host:
    """Choose a host for VM ``vm_id`` and book its vCPUs and memory there; the host must
    also have ``disk_mib`` (the VM's disk) and :data:`DISK_HEADROOM_MIB` free."""
    fresh_after = utcnow() - dt.timedelta(seconds=HostPolicy.of(settings).lost_after_seconds)
    hosts = list(await session.scalars(select(Host).order_by(Host.id).with_for_update()))
    await release(session, vm_id)  # a retried create places afresh
    booked = await _booked(session)

    def free(h: Host) -> tuple[int, int, int]:
        b_vcpus, b_memory, b_vms = booked.get(h.id, (0, 0, 0))
        return (h.vcpus - h.vcpus_used - b_vcpus, h.memory_mib - h.memory_used_mib - b_memory,
                h.vms_running + b_vms)

    usable = [h for h in hosts if h.status == ACTIVE and h.cert_pem and h.last_heartbeat_at
              and h.last_heartbeat_at >= fresh_after]
    roomy = [h for h in usable if free(h)[0] >= vcpus and free(h)[1] >= memory_mib]
    disk_needed = disk_mib + DISK_HEADROOM_MIB
    fitting = [h for h in roomy if h.disk_free_mib >= disk_needed]
    asked = f"{vcpus} vCPU / {memory_mib} MiB"
    if roomy and not fitting:
        full = ", ".join(f"{h.name} ({h.disk_free_mib} MiB free)" for h in roomy)
        raise NoCapacity(
            f"no microVM host has disk for VM {vm_id}: it needs {disk_needed} MiB free in the "
            f"agent's data directory ({disk_mib} MiB disk and {DISK_HEADROOM_MIB} MiB for its "
            f"seed and records); the hosts with {asked} free have too little: {full}",
            hosts_known=True, usable=len(usable), disk_full=True)
    if not fitting:
        silent = [h for h in hosts if h.status != DRAINING and h not in usable]
        raise NoCapacity(
            f"no microVM host has room for {asked} ({len(usable)} usable of {len(hosts)} registered)",
            hosts_known=bool(hosts), usable=len(usable),
            expected=tuple(dict.fromkeys([h.name for h in silent] + await _enrolling(session))),
            silent={h.name: (h.status, h.last_heartbeat_at) for h in silent},
        )
    await _keep_clear(session, vm_id, [free(h) for h in usable], vcpus, memory_mib)
    host = max(fitting, key=lambda h: (free(h)[1] - memory_mib, -free(h)[2], h.name))
    await session.execute(insert(HostBooking).values(
        vm_id=vm_id, host_id=host.id, vcpus=vcpus, memory_mib=memory_mib, booked_at=utcnow()))
    log.info("hosts.placed", host_id=str(host.id), name=host.name, vm_id=vm_id, vcpus=vcpus,
             memory_mib=memory_mib, disk_mib=disk_mib)
    return host


async def _keep_clear(session: AsyncSession, vm_id: str, free: list[tuple[int, int, int]],
                      vcpus: int, memory_mib: int) -> None:
    """Refuse (:class:`NoCapacity`) a VM that fits only in capacity held for others: the live
    hosts' free vCPUs and memory, less what the capacity holders keep, must take it."""
    for holder in _capacity_holders.values():
        held = await holder(session, vm_id)
        if not (held.vcpus or held.memory_mib):
            continue
        free_vcpus = sum(max(f[0], 0) for f in free)
        free_memory = sum(max(f[1], 0) for f in free)
        if free_vcpus - held.vcpus < vcpus or free_memory - held.memory_mib < memory_mib:
            raise NoCapacity(
                f"the microVM hosts have {free_vcpus} vCPUs and {free_memory} MiB free, of which "
                f"{held.vcpus} vCPUs and {held.memory_mib} MiB are held by {held.by}; VM {vm_id} "
                f"needs {vcpus} vCPU / {memory_mib} MiB outside them: it waits for room",
                hosts_known=True, usable=len(free))


async def placed_on(session: AsyncSession, vm_id: str) -> Host | None:
    """The host VM ``vm_id`` was placed on (its live or confirmed booking), if any: the only
    host a retried create may adopt the VM from."""
    return await session.scalar(
        select(Host).join(HostBooking, HostBooking.host_id == Host.id)
        .where(HostBooking.vm_id == vm_id,
               or_(HostBooking.confirmed_at.is_not(None),
                   HostBooking.booked_at >= utcnow() - BOOKING_TTL)))


async def release(session: AsyncSession, vm_id: str) -> None:
    """Drop the booking of a VM whose create failed or that was deleted."""
    await session.execute(delete(HostBooking).where(HostBooking.vm_id == vm_id))
