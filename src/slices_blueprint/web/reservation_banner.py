"""The banner over the dashboard, the reservations page and the page of a resource running
inside a reservation, while that reservation ends soon: when, what will be deleted then,
and a button to extend it (the reservations page's extend form)."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.models import utcnow
from slices_blueprint.identity.caller import Caller
from slices_blueprint.reservations import service
from slices_blueprint.reservations.schemas import ReservationOut

EXTEND_HOURS = 1  # what the banner's Extend adds


@dataclass(frozen=True)
class EndingSoon:
    """One reservation's banner."""

    id: str
    name: str  # what it holds, as the reservations page names it
    minutes: int
    ends_at: dt.datetime
    doomed: list[str]  # what runs inside it, deleted at its end


def _name(r: ReservationOut) -> str:
    held = [i.name for i in r.equipment]
    if r.vcpus or r.ram_mib:
        held.append(f"{r.vcpus} vCPUs, {r.ram_mib / 1024:.1f} GiB")
    return ", ".join(held)


async def ending_soon(db: AsyncSession, settings: Settings, caller: Caller,
                      reservation_id: uuid.UUID | None = None) -> list[EndingSoon]:
    """The banners of the caller's reservations ending soon (``reservation_id``: that one's)."""
    rows = await service.ending_soon(db, settings, caller, reservation_id)
    now = utcnow()
    return [EndingSoon(r.id, _name(r), math.ceil((r.ends_at - now).total_seconds() / 60), r.ends_at, r.bound)
            for r in await service.outs(db, settings.site_id, rows)]
