"""The reservations week for the UI: each bookable equipment item (grouped by kind) and the
microVM hosts' reserved capacity in 3-hour blocks over seven days (UTC), every block said
to be free, busy, yours or past in words."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.errors import Invalid
from slices_blueprint.core.ids import format_id
from slices_blueprint.identity.caller import Caller
from slices_blueprint.reservations import equipment, service
from slices_blueprint.reservations.calendar import Calendar, Share, Window
from slices_blueprint.reservations.models import (
    ACTIVE,
    ENDED,
    LIVE,
    SCHEDULED,
    Reservation,
    ReservedEquipment,
)

BLOCK = dt.timedelta(hours=3)
DAY = dt.timedelta(days=1)
QUARTER = dt.timedelta(minutes=15)
BOOK = "/reservations/new"


@dataclass(frozen=True)
class Cell:
    """One block of one row: ``state`` is free, busy, yours, full, none (no hosts) or past; ``book`` the
    booking form's query (free blocks), ``mine`` the caller's live reservation's id."""

    start: dt.datetime
    state: str
    detail: str = ""
    book: str | None = None
    mine: str | None = None


@dataclass(frozen=True)
class Row:
    name: str
    site: str
    days: list[list[Cell]]


@dataclass(frozen=True)
class Week:
    monday: dt.datetime
    days: list[dt.datetime]
    kinds: list[tuple[str, list[Row]]]
    capacity: list[list[Cell]]
    total: tuple[int, int]  # the hosts' vCPUs and MiB

    @property
    def previous(self) -> str:
        return (self.monday - 7 * DAY).date().isoformat()

    @property
    def next(self) -> str:
        return (self.monday + 7 * DAY).date().isoformat()


def monday_of(text: str | None, now: dt.datetime) -> dt.datetime:
    """00:00 UTC on the Monday of the week holding the date ``text`` (default: today)."""
    try:
        day = dt.date.fromisoformat(text) if text else now.astimezone(dt.UTC).date()
    except ValueError:
        raise Invalid("week: give a date as YYYY-MM-DD") from None
    day -= dt.timedelta(days=day.weekday())
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def next_quarter(now: dt.datetime) -> dt.datetime:
    """``now`` rounded up to a quarter hour (the earliest start the form offers)."""
    floor = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return floor if floor == now else floor + QUARTER


def book_query(when: dt.datetime, **fields: str | int) -> str:
    """The booking form's query string, the start as the form shows it (UTC, minutes)."""
    return urlencode({**{k: v for k, v in fields.items() if v}, "start": f"{when.astimezone(dt.UTC):%Y-%m-%dT%H:%M}"}, safe=":")


def _blocks(monday: dt.datetime) -> list[list[dt.datetime]]:
    return [[monday + d * DAY + b * BLOCK for b in range(DAY // BLOCK)] for d in range(7)]


def _is_mine(caller: Caller, reservation: Reservation) -> bool:
    return reservation.project_id in caller.project_ids or (
        caller.user is not None and reservation.created_by == caller.user.id)


def _span(start: dt.datetime, end: dt.datetime, block: dt.datetime) -> str:
    """The part of ``[start, end)`` inside the block, or "" when it covers it all."""
    lo, hi = max(start, block), min(end, block + BLOCK)
    return "" if (lo, hi) == (block, block + BLOCK) else f"{lo:%H:%M}–{hi:%H:%M}"


def _item_cell(block: dt.datetime, now: dt.datetime, holds: list[tuple[dt.datetime, dt.datetime, Reservation]],
               caller: Caller, site: str, name: str) -> Cell:
    inside = [(s, e, r) for s, e, r in holds if s < block + BLOCK and block < e]
    mine = next((r for _, _, r in inside if _is_mine(caller, r)), None)
    detail = ", ".join(_span(s, e, block) for s, e, _ in inside if _span(s, e, block))
    if mine is not None:
        live = mine.status in LIVE
        return Cell(block, "yours", detail, mine=format_id(service.ID_TYPE, site, mine.id) if live else None)
    if inside:
        return Cell(block, "busy", detail)
    if block + BLOCK <= now:
        return Cell(block, "past")
    return Cell(block, "free", book=book_query(max(block, next_quarter(now)), equipment=name))


def _capacity_cell(block: dt.datetime, now: dt.datetime, calendar: Calendar, mine: list[Share]) -> Cell:
    vcpus, ram = calendar.peak(Window(block, block + BLOCK))
    total_vcpus, total_ram = calendar.capacity
    detail = f"{vcpus}/{total_vcpus} vCPU · {ram / 1024:g}/{total_ram / 1024:g} GiB"
    if block + BLOCK <= now:
        return Cell(block, "past", detail)
    if not total_vcpus:
        return Cell(block, "none", "no microVM hosts")
    yours = any(s.start < block + BLOCK and block < s.end for s in mine)
    if vcpus >= total_vcpus or ram >= total_ram:
        return Cell(block, "yours" if yours else "full", detail)
    return Cell(block, "yours" if yours else "free", detail, book=book_query(max(block, next_quarter(now)), vcpus=1))


async def load_week(db: AsyncSession, caller: Caller, site: str, monday: dt.datetime, now: dt.datetime) -> Week:
    """The week from ``monday``: who holds each bookable item when, and the capacity reserved."""
    end = monday + 7 * DAY
    span = Range(monday, end, bounds="[)")
    items = await equipment.list_equipment(db)
    holds: dict[int, list[tuple[dt.datetime, dt.datetime, Reservation]]] = {}
    rows = await db.execute(
        select(ReservedEquipment.equipment_number, ReservedEquipment.period, Reservation)
        .join(Reservation, Reservation.id == ReservedEquipment.reservation_id)
        .where(ReservedEquipment.period.overlaps(span)))
    for number, period, reservation in rows:
        holds.setdefault(number, []).append((period.lower, period.upper, reservation))
    blocks = _blocks(monday)
    kinds = [(kind, [Row(item.name, item.site,
                         [[_item_cell(b, now, holds.get(item.number, []), caller, site, item.name) for b in day]
                          for day in blocks]) for item in group])
             for kind, group in itertools.groupby(items, key=lambda e: e.kind)]
    shares = list(await db.scalars(select(Reservation).where(
        Reservation.status.in_((SCHEDULED, ACTIVE, ENDED)), Reservation.vcpus + Reservation.ram_mib > 0,
        Reservation.starts_at < end, Reservation.ends_at > monday)))
    calendar = Calendar(names={}, pool={}, shares=[Share(r.starts_at, r.ends_at, r.vcpus, r.ram_mib) for r in shares],
                        capacity=await service.host_capacity(db))
    mine = [Share(r.starts_at, r.ends_at, r.vcpus, r.ram_mib) for r in shares if _is_mine(caller, r)]
    capacity = [[_capacity_cell(b, now, calendar, mine) for b in day] for day in blocks]
    return Week(monday, [day[0] for day in blocks], kinds, capacity, calendar.capacity)
