"""Resources that run inside a reservation: whether a request may, and what it is then.

A request naming a reservation must be allowed to run in it (``reservations.binding``); its
microVMs must fit in the host capacity the reservation holds, together with those already
running in it (a reservation of equipment only is a window, nothing more). A reservation that
has not started defers the creates to its start. MicroVMs outside any reservation keep clear
of the capacity the reservations active now hold: when the request is accepted
(:func:`place`), and again when each is placed on a host (:func:`held_for_others`, asked by
``hosts.place``), since a reservation may have started in between.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import Flavor
from slices_blueprint.core.errors import Conflict
from slices_blueprint.core.ids import InvalidId, body_id, parse_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.hosts.models import HostBooking
from slices_blueprint.hosts.service import HeldCapacity
from slices_blueprint.identity.caller import Caller
from slices_blueprint.reservations import binding
from slices_blueprint.reservations.models import LIVE, Reservation
from slices_blueprint.reservations.service import CAPACITY_LOCK, host_capacity
from slices_blueprint.resources.models import ComputeResource

MICROVM = "microvm"  # the flavor type that draws on the hosts' capacity a reservation holds


@dataclass(frozen=True)
class Placement:
    """When and until when the request's resources run."""

    reservation: Reservation | None
    expires_at: dt.datetime
    not_before: dt.datetime | None  # the creates wait until then (the reservation's start)
    reason: str | None  # why they wait, as the resources' status_reason says


async def place(session: AsyncSession, caller: Caller, site: str, reservation_id: str | None,
                flavors: Sequence[Flavor], expires_at: dt.datetime, asked: bool, cap: dt.datetime) -> Placement:
    """The placement of new resources of ``flavors``, inside the reservation named (if any);
    ``expires_at`` is their expiry outside it (``asked``: as requested), ``cap`` the latest."""
    if reservation_id is None:
        await _keep_clear(session, [f for f in flavors if f.flavor_type == MICROVM])
        return Placement(None, expires_at, None, None)
    reservation = await binding.bindable(
        session, caller, body_id(reservation_id, "reservation", "reservation_id"), site)
    if reservation.vcpus or reservation.ram_mib:
        await _check_capacity(session, reservation, [f for f in flavors if f.flavor_type == MICROVM], site)
    expires_at = binding.expiry(reservation, expires_at, asked, cap)
    if binding.started(reservation):
        return Placement(reservation, expires_at, None, None)
    return Placement(reservation, expires_at, reservation.starts_at, binding.waiting_reason(reservation, site))


async def _check_capacity(session: AsyncSession, reservation: Reservation, flavors: list[Flavor], site: str) -> None:
    if not flavors:
        return
    used_vcpus, used_ram = (await session.execute(
        select(func.coalesce(func.sum(Flavor.vcpus), 0), func.coalesce(func.sum(Flavor.ram_mib), 0))
        .join(ComputeResource, ComputeResource.flavor_id == Flavor.id)
        .where(ComputeResource.reservation_id == reservation.id, ComputeResource.status != "deleted",
               ComputeResource.provider == MICROVM))).one()
    vcpus = int(used_vcpus) + sum(f.vcpus for f in flavors)
    ram = int(used_ram) + sum(f.ram_mib for f in flavors)
    if vcpus > reservation.vcpus or ram > reservation.ram_mib:
        raise Conflict(f"{binding.describe(reservation, site)} holds {reservation.vcpus} vCPUs and "
                       f"{reservation.ram_mib} MiB of microVM hosts; its microVMs would use {vcpus} vCPUs and "
                       f"{ram} MiB with these")


async def _active_holding(session: AsyncSession) -> list[Reservation]:
    """The reservations active now that hold microVM host capacity."""
    now = utcnow()
    return list(await session.scalars(select(Reservation).where(
        Reservation.status.in_(LIVE), Reservation.starts_at <= now, Reservation.ends_at > now,
        Reservation.vcpus + Reservation.ram_mib > 0)))


def _resource_uuid(vm_id: str) -> uuid.UUID | None:
    try:
        return parse_id(vm_id, "resource")
    except InvalidId:
        return None


async def held_for_others(session: AsyncSession, vm_id: str) -> HeldCapacity:
    """The host capacity microVM ``vm_id`` (a resource id) must leave alone when placed: what
    each reservation active now (but its own) holds beyond its microVMs already on a host (one
    booked or running there: the hosts count those themselves)."""
    own_id = _resource_uuid(vm_id)
    own = await session.scalar(select(ComputeResource.reservation_id).where(ComputeResource.id == own_id)) \
        if own_id else None
    active = [r for r in await _active_holding(session) if r.id != own]
    if not active:
        return HeldCapacity()
    booked = {u for u in map(_resource_uuid, await session.scalars(select(HostBooking.vm_id))) if u}
    placed: dict[uuid.UUID, list[int]] = {r.id: [0, 0] for r in active}
    for reservation_id, resource_id, ref, vcpus, ram in await session.execute(
            select(ComputeResource.reservation_id, ComputeResource.id, ComputeResource.provider_resource_id,
                   Flavor.vcpus, Flavor.ram_mib)
            .join(Flavor, ComputeResource.flavor_id == Flavor.id)
            .where(ComputeResource.reservation_id.in_(placed), ComputeResource.status != "deleted",
                   ComputeResource.provider == MICROVM)):
        if ref is not None or resource_id in booked:
            placed[reservation_id][0] += vcpus
            placed[reservation_id][1] += ram
    return HeldCapacity(vcpus=sum(max(r.vcpus - placed[r.id][0], 0) for r in active),
                        memory_mib=sum(max(r.ram_mib - placed[r.id][1], 0) for r in active),
                        by=f"{len(active)} active reservation(s)")


async def _keep_clear(session: AsyncSession, flavors: list[Flavor]) -> None:
    """Refuse (409) microVMs outside any reservation that would eat into the host capacity
    held by the reservations active now: they fit only in the hosts' capacity less what runs
    outside reservations and less each active reservation's share (serialised with new
    reservations by their capacity lock). Without such a reservation the hosts decide."""
    if not flavors:
        return
    active = await _active_holding(session)
    if not active:
        return
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(CAPACITY_LOCK))))
    used = {reservation_id: (int(vcpus), int(ram)) for reservation_id, vcpus, ram in await session.execute(
        select(ComputeResource.reservation_id, func.sum(Flavor.vcpus), func.sum(Flavor.ram_mib))
        .join(Flavor, ComputeResource.flavor_id == Flavor.id)
        .where(ComputeResource.status != "deleted", ComputeResource.provider == MICROVM)
        .group_by(ComputeResource.reservation_id))}
    held_vcpus = sum(max(r.vcpus, used.get(r.id, (0, 0))[0]) for r in active)
    held_ram = sum(max(r.ram_mib, used.get(r.id, (0, 0))[1]) for r in active)
    outside_vcpus, outside_ram = used.get(None, (0, 0))
    vcpus, ram = await host_capacity(session)
    free_vcpus, free_ram = vcpus - outside_vcpus - held_vcpus, ram - outside_ram - held_ram
    need_vcpus, need_ram = sum(f.vcpus for f in flavors), sum(f.ram_mib for f in flavors)
    if need_vcpus > free_vcpus or need_ram > free_ram:
        raise Conflict(f"the microVM hosts have {max(free_vcpus, 0)} vCPUs and {max(free_ram, 0)} MiB free outside "
                       f"reservations now ({held_vcpus} vCPUs and {held_ram} MiB are held by {len(active)} active "
                       f"reservation(s)); these microVMs need {need_vcpus} vCPUs and {need_ram} MiB: run them inside "
                       "a reservation, or once it ends", free_vcpus=max(free_vcpus, 0), free_ram_mib=max(free_ram, 0))
