"""Resources that run inside a reservation: whether a request may, and what it is then.

A request naming a reservation must be allowed to run in it (``reservations.binding``); its
microVMs must fit in the host capacity the reservation holds, together with those already
running in it (a reservation of equipment only is a window, nothing more). A reservation that
has not started defers the creates to its start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import Flavor
from slices_blueprint.core.errors import Conflict
from slices_blueprint.core.ids import body_id
from slices_blueprint.identity.caller import Caller
from slices_blueprint.reservations import binding
from slices_blueprint.reservations.models import Reservation
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
