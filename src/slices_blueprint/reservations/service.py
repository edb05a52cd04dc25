"""Reservations: create (refused at once on a conflict, with the next free windows offered),
extend, cancel, list, availability, and the periodic start/warn/end of their windows.

Checks are made in memory on a :class:`~slices_blueprint.reservations.calendar.Calendar`
loaded under transaction-scoped locks, taken in one order everywhere: the project's row
(reserved-hours limit), an advisory lock per equipment kind asked for (so concurrent "any N
of kind X" picks see each other's items and take different ones), then the site's capacity
lock (capacity is a sum: no constraint can hold it). Whatever the locks, no item is ever
held twice at once: the exclusion constraint on ``reserved_equipment`` refuses it (answered
409 like a conflict found by the check).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable

import procrastinate
import structlog
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import Range, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Conflict, Forbidden, Invalid, NotFound
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.events.service import record
from slices_blueprint.hosts.models import Host
from slices_blueprint.hosts.service import DRAINING
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment, Project
from slices_blueprint.reservations import binding, limits
from slices_blueprint.reservations.calendar import Calendar, Demand, Share, Window
from slices_blueprint.reservations.models import (
    ACTIVE,
    CANCELLED,
    ENDED,
    LIVE,
    SCHEDULED,
    Equipment,
    Reservation,
    ReservedEquipment,
)
from slices_blueprint.reservations.schemas import (
    AvailabilityOut,
    HeldItem,
    ReservationAsk,
    ReservationCreate,
    ReservationExtend,
    ReservationOut,
    Slot,
)

log = structlog.get_logger(__name__)
ID_TYPE = "reservation"
START_SLACK = dt.timedelta(minutes=1)  # a start this far in the past is taken as "now"
ALTERNATIVES = 5  # free windows offered with a conflict
CAPACITY_LOCK = "slices-blueprint:reservations:capacity"
EXCLUSION_VIOLATION = "23P01"
CLOCK = binding.CLOCK


class Unavailable(Conflict):
    title = "Not available"


# ---- reading ---------------------------------------------------------------------------

def scoped(caller: Caller) -> Select[tuple[Reservation]]:
    """Reservations the caller may see: an experiment token its experiment's and its
    project's project-wide ones; a user token their projects' and their own; admins all."""
    query = select(Reservation)
    if caller.experiment is not None:
        exp = caller.experiment
        return query.where((Reservation.experiment_id == exp.id)
                           | (Reservation.experiment_id.is_(None) & (Reservation.project_id == exp.project_id)))
    if caller.is_admin:
        return query
    assert caller.user is not None
    return query.where(Reservation.project_id.in_(caller.project_ids) | (Reservation.created_by == caller.user.id))


async def get(session: AsyncSession, caller: Caller, reservation_id: uuid.UUID, *, write: bool = False) -> Reservation:
    """One reservation the caller may see (locked, and changeable by them, with ``write``);
    another project's is "no such reservation", exactly as a missing one."""
    query = scoped(caller).where(Reservation.id == reservation_id)
    reservation = await session.scalar(query.with_for_update() if write else query)
    if reservation is None:
        raise NotFound("no such reservation")
    if write and caller.experiment is not None and reservation.experiment_id != caller.experiment.id:
        raise Forbidden("this is a project-wide reservation: change it with a user token of the project")
    return reservation


async def list_reservations(session: AsyncSession, caller: Caller, *, include_past: bool) -> list[Reservation]:
    query = scoped(caller).order_by(Reservation.starts_at, Reservation.id)
    if not include_past:
        query = query.where(Reservation.status.in_(LIVE))
    return list(await session.scalars(query))


async def ending_soon(session: AsyncSession, settings: Settings, caller: Caller,
                      reservation_id: uuid.UUID | None = None) -> list[Reservation]:
    """The caller's running reservations that end within ``reservation_warning_minutes``
    (those of their projects or booked by them, even for an admin; ``reservation_id``: that
    one alone, if it is one of them), soonest first."""
    now = utcnow()
    query = scoped(caller).where(
        Reservation.status.in_(LIVE), Reservation.starts_at <= now, Reservation.ends_at > now,
        Reservation.ends_at <= now + dt.timedelta(minutes=settings.reservation_warning_minutes))
    if caller.experiment is None:
        assert caller.user is not None
        query = query.where(Reservation.project_id.in_(caller.project_ids) | (Reservation.created_by == caller.user.id))
    if reservation_id is not None:
        query = query.where(Reservation.id == reservation_id)
    return list(await session.scalars(query.order_by(Reservation.ends_at, Reservation.id)))


async def _held_items(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[HeldItem]]:
    rows = await session.execute(
        select(ReservedEquipment.reservation_id, Equipment.name, Equipment.kind)
        .join(Equipment, Equipment.number == ReservedEquipment.equipment_number)
        .where(ReservedEquipment.reservation_id.in_(list(ids))).order_by(Equipment.kind, Equipment.name))
    held: dict[uuid.UUID, list[HeldItem]] = defaultdict(list)
    for reservation_id, name, kind in rows:
        held[reservation_id].append(HeldItem(name=name, kind=kind))
    return held


async def outs(session: AsyncSession, site: str, reservations: list[Reservation]) -> list[ReservationOut]:
    """The API views of ``reservations``."""
    held = await _held_items(session, (r.id for r in reservations))
    bound = await binding.bound(session, [r.id for r in reservations if r.status in LIVE])
    now = utcnow()
    return [ReservationOut(
        id=format_id(ID_TYPE, site, r.id), project_id=r.project_id, experiment_id=r.experiment_id,
        created_by=r.created_by, status=r.status, starts_at=r.starts_at, ends_at=r.ends_at,
        seconds_left=max(0, int((r.ends_at - now).total_seconds())) if r.status in LIVE else 0,
        equipment=held.get(r.id, []), bound=bound.get(r.id, []), vcpus=r.vcpus, ram_mib=r.ram_mib, request=r.request,
        ending_soon=r.warned_at is not None, cancelled_at=r.cancelled_at, cancelled_by=r.cancelled_by,
        cancel_reason=r.cancel_reason, created_at=r.created_at) for r in reservations]


# ---- the calendar ----------------------------------------------------------------------

async def _lock(session: AsyncSession, name: str) -> None:
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))


async def host_capacity(session: AsyncSession) -> tuple[int, int]:
    """The vCPUs and MiB of the site's microVM hosts (all but those draining)."""
    row = (await session.execute(select(func.coalesce(func.sum(Host.vcpus), 0), func.coalesce(func.sum(Host.memory_mib), 0))
                                 .where(Host.status != DRAINING))).one()
    return int(row[0]), int(row[1])


async def _demand(session: AsyncSession, ask: ReservationAsk) -> tuple[Demand, dict[int, Equipment]]:
    """The request as equipment numbers and kinds; unknown, hidden or repeated names and
    kinds with too few items are refused (422: no time would do)."""
    if len(set(ask.equipment)) != len(ask.equipment):
        raise Invalid("equipment: a name is given twice")
    if len({k.kind for k in ask.any_of}) != len(ask.any_of):
        raise Invalid("any_of: a kind is given twice (add up its counts)")
    if not (ask.equipment or ask.any_of or ask.vcpus or ask.ram_mib):
        raise Invalid("nothing to reserve: give equipment, any_of, vcpus or ram_mib")
    named = {e.name: e for e in await session.scalars(
        select(Equipment).where(Equipment.name.in_(ask.equipment), Equipment.hidden.is_(False)))}
    missing = [n for n in ask.equipment if n not in named]
    if missing:
        raise Invalid(f"equipment: no bookable equipment named {', '.join(missing)}")
    items = {e.number: e for e in named.values()}
    for part in ask.any_of:
        pool = [e for e in await session.scalars(
            select(Equipment).where(Equipment.kind == part.kind, Equipment.hidden.is_(False)).order_by(Equipment.number))
            if e.name not in named]
        if len(pool) < part.count:
            raise Invalid(f"any_of: this site has {len(pool)} bookable {part.kind} items "
                          f"(besides those named), {part.count} asked")
        items |= {e.number: e for e in pool}
    demand = Demand(named=tuple(e.number for e in named.values()),
                    kinds=tuple((k.kind, k.count) for k in ask.any_of), vcpus=ask.vcpus, ram_mib=ask.ram_mib)
    return demand, items


async def _calendar(session: AsyncSession, items: dict[int, Equipment], demand: Demand, since: dt.datetime,
                    until: dt.datetime, *, excluding: uuid.UUID | None = None) -> Calendar:
    """The holdings of ``items`` and the capacity shares between ``since`` and ``until``."""
    pool: dict[str, list[int]] = defaultdict(list)
    for number, item in sorted(items.items()):
        pool[item.kind].append(number)
    calendar = Calendar(names={n: e.name for n, e in items.items()}, pool=dict(pool))
    span = Range(since, until, bounds="[)")
    held = select(ReservedEquipment.equipment_number, ReservedEquipment.period).where(
        ReservedEquipment.equipment_number.in_(list(items)), ReservedEquipment.period.overlaps(span))
    if excluding:
        held = held.where(ReservedEquipment.reservation_id != excluding)
    for number, period in await session.execute(held):
        calendar.held.setdefault(number, []).append((period.lower, period.upper))
    for spans in calendar.held.values():
        spans.sort()
    if demand.wants_capacity:
        shares = select(Reservation).where(Reservation.status.in_(LIVE), Reservation.vcpus + Reservation.ram_mib > 0,
                                           Reservation.starts_at < until, Reservation.ends_at > since)
        if excluding:
            shares = shares.where(Reservation.id != excluding)
        calendar.shares = [Share(r.starts_at, r.ends_at, r.vcpus, r.ram_mib) for r in await session.scalars(shares)]
        calendar.capacity = await host_capacity(session)
    return calendar


def _check_capacity(demand: Demand, capacity: tuple[int, int]) -> None:
    vcpus, ram = capacity
    if demand.vcpus > vcpus or demand.ram_mib > ram:
        raise Invalid(f"the site's microVM hosts have {vcpus} vCPUs and {ram} MiB in all: "
                      f"{demand.vcpus} vCPUs and {demand.ram_mib} MiB can never be reserved")


async def _lock_for(session: AsyncSession, items: dict[int, Equipment], demand: Demand) -> None:
    for kind in sorted({e.kind for e in items.values()}):
        await _lock(session, f"slices-blueprint:reservations:kind:{kind}")
    if demand.wants_capacity:
        await _lock(session, CAPACITY_LOCK)


def _slots(windows: list[Window]) -> list[Slot]:
    return [Slot(starts_at=w.start, ends_at=w.end) for w in windows]


def _horizon(settings: Settings, now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(days=settings.reservation_horizon_days)


# ---- creating --------------------------------------------------------------------------

async def _owner(session: AsyncSession, caller: Caller, project_id: str | None) -> tuple[str, str | None, dt.datetime | None]:
    """(project, experiment, the latest end allowed) of a new reservation."""
    if caller.experiment is not None:
        exp = caller.experiment
        if project_id not in (None, exp.project_id):
            raise Invalid(f"project_id: an experiment token reserves for its own project ({exp.project_id})")
        return exp.project_id, exp.id, exp.expires_at
    if project_id is None:
        if len(caller.project_ids) != 1:
            raise Invalid(f"project_id: give one of your projects ({', '.join(sorted(caller.project_ids)) or 'none'})")
        project_id = next(iter(caller.project_ids))
    if project_id not in caller.project_ids and not caller.is_admin:
        raise Forbidden(f"{project_id} is not one of your projects")
    await session.execute(insert(Project).values(id=project_id).on_conflict_do_nothing(index_elements=["id"]))
    return project_id, None, (await session.get(Project, project_id)).expires_at


async def _expiry_of(session: AsyncSession, reservation: Reservation) -> dt.datetime | None:
    """The expiry of the reservation's experiment (or project, for a project-wide one)."""
    owner = (await session.get(Experiment, reservation.experiment_id) if reservation.experiment_id
             else await session.get(Project, reservation.project_id))
    return owner.expires_at if owner else None


def _window(settings: Settings, body: ReservationCreate, now: dt.datetime, cap: dt.datetime | None) -> Window:
    start = body.starts_at or now
    if start < now - START_SLACK:
        raise Invalid("starts_at: must not be in the past")
    start = max(start, now)
    if (body.ends_at is None) == (body.hours is None):
        raise Invalid("give exactly one of ends_at or hours")
    end = body.ends_at or start + dt.timedelta(hours=body.hours or 0)
    _check_end(settings, start, end, now, cap)
    return Window(start, end)


def _check_end(settings: Settings, start: dt.datetime, end: dt.datetime, now: dt.datetime,
               cap: dt.datetime | None) -> None:
    if end <= start:
        raise Invalid("ends_at: must be after the start")
    horizon = _horizon(settings, now)
    if end > horizon:
        raise Invalid(f"ends_at: reservations may end at most {settings.reservation_horizon_days} days ahead "
                      f"({horizon.isoformat()})")
    if cap is not None and end > cap:
        raise Invalid(f"ends_at: must not be after the experiment's or project's expiry ({cap.isoformat()})")


def _refuse(conflicts: list[str], alternatives: list[Window], what: str) -> Unavailable:
    offered = "; free: " + ", ".join(f"{w.start.isoformat()}" for w in alternatives) if alternatives else ""
    return Unavailable(f"{what}: {'; '.join(conflicts)}{offered}", conflicts=conflicts,
                       alternatives=[s.model_dump(mode="json") for s in _slots(alternatives)])


async def _hold(session: AsyncSession, reservation: Reservation, numbers: list[int], what: str) -> None:
    """Insert or move the reservation's items; the exclusion constraint is the last word."""
    period = Range(reservation.starts_at, reservation.ends_at, bounds="[)")
    try:
        async with session.begin_nested():
            await session.flush()
            if numbers:
                await session.execute(
                    insert(ReservedEquipment)
                    .values([{"reservation_id": reservation.id, "equipment_number": n, "period": period} for n in numbers])
                    .on_conflict_do_update(index_elements=["reservation_id", "equipment_number"], set_={"period": period}))
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != EXCLUSION_VIOLATION:
            raise
        raise Unavailable(f"{what}: an item was reserved by someone else at the same moment; try again",
                          conflicts=["held by a concurrent reservation"], alternatives=[]) from None


async def create(session: AsyncSession, settings: Settings, caller: Caller, body: ReservationCreate) -> Reservation:
    """Reserve what ``body`` asks for over its window, or refuse: 422 (never possible),
    403 (past the project's reserved hours), 409 (taken then: the next free windows offered)."""
    now = utcnow()
    project_id, experiment_id, cap = await _owner(session, caller, body.project_id)
    window = _window(settings, body, now, cap)
    demand, items = await _demand(session, body)
    await limits.admit(session, settings, project_id, limits.hours(
        window.start, window.end, len(demand.named) + sum(c for _, c in demand.kinds), demand.wants_capacity))
    await _lock_for(session, items, demand)
    until = _horizon(settings, now) if cap is None else min(_horizon(settings, now), cap)
    calendar = await _calendar(session, items, demand, window.start, until)
    if demand.wants_capacity:
        _check_capacity(demand, calendar.capacity)
    conflicts = calendar.conflicts(demand, window)
    if conflicts:
        log.info("reservations.refused", project_id=project_id, conflicts=conflicts)
        raise _refuse(conflicts, calendar.next_starts(demand, window, until, ALTERNATIVES), "not available then")
    numbers = [*demand.named, *(calendar.pick(demand, window) or [])]
    reservation = Reservation(project_id=project_id, experiment_id=experiment_id,
                              created_by=caller.user.id if caller.user else None, starts_at=window.start,
                              ends_at=window.end, status=SCHEDULED, vcpus=demand.vcpus, ram_mib=demand.ram_mib,
                              request=body.model_dump(mode="json", include=set(ReservationAsk.model_fields)))
    session.add(reservation)
    await _hold(session, reservation, numbers, "not available then")
    await record(session, actor=caller.actor, action="reservation.create", outcome="ok", resource_id=reservation.id,
                 project_id=project_id, experiment_id=experiment_id, starts_at=window.start.isoformat(),
                 ends_at=window.end.isoformat(), equipment=sorted(items[n].name for n in numbers),
                 vcpus=demand.vcpus, ram_mib=demand.ram_mib)
    if window.start <= now:
        await _start(session, settings, reservation)
    return reservation


async def availability(session: AsyncSession, settings: Settings, ask: ReservationAsk, hours: float,
                       after: dt.datetime | None, limit: int) -> AvailabilityOut:
    """The next ``limit`` start times from ``after`` (default now) at which ``ask`` would fit
    for ``hours`` hours (see ``calendar`` for which instants are tried)."""
    now = utcnow().replace(microsecond=0)
    start = max(after or now, now)
    window = Window(start, start + dt.timedelta(hours=hours))
    until = _horizon(settings, now)
    if start >= until:
        raise Invalid(f"after: reservations may end at most {settings.reservation_horizon_days} days ahead "
                      f"({until.isoformat()}); nothing can start after that")
    demand, items = await _demand(session, ask)
    calendar = await _calendar(session, items, demand, start, until)
    if demand.wants_capacity:
        _check_capacity(demand, calendar.capacity)
    capacity = await host_capacity(session)
    return AvailabilityOut(slots=_slots(calendar.next_starts(demand, window, until, limit)),
                           capacity={"vcpus": capacity[0], "ram_mib": capacity[1]})


# ---- changing --------------------------------------------------------------------------

def _must_be_live(reservation: Reservation) -> None:
    if reservation.status not in LIVE:
        raise Conflict(f"the reservation is {reservation.status}")


async def extend(session: AsyncSession, settings: Settings, caller: Caller, reservation: Reservation,
                 body: ReservationExtend) -> Reservation:
    """Move the end later where the calendar is free (409 naming what is in the way); what
    runs inside it until its old end runs until the new one."""
    _must_be_live(reservation)
    if reservation.ends_at <= utcnow():
        raise Conflict("the reservation has ended")  # the clock has yet to mark it
    if (body.ends_at is None) == (body.hours is None):
        raise Invalid("give exactly one of ends_at or hours")
    old_end = reservation.ends_at
    new_end = body.ends_at or old_end + dt.timedelta(hours=body.hours or 0)
    if new_end <= old_end:
        raise Invalid(f"ends_at: must be later than the current end ({old_end.isoformat()})")
    _check_end(settings, reservation.starts_at, new_end, utcnow(), await _expiry_of(session, reservation))
    held = list(await session.scalars(select(Equipment).join(
        ReservedEquipment, ReservedEquipment.equipment_number == Equipment.number)
        .where(ReservedEquipment.reservation_id == reservation.id)))
    demand = Demand(named=tuple(e.number for e in held), vcpus=reservation.vcpus, ram_mib=reservation.ram_mib)
    await limits.admit(session, settings, reservation.project_id,
                       limits.hours(old_end, new_end, len(held), demand.wants_capacity))
    items = {e.number: e for e in held}
    await _lock_for(session, items, demand)
    extra = Window(old_end, new_end)
    calendar = await _calendar(session, items, demand, old_end, new_end, excluding=reservation.id)
    conflicts = calendar.conflicts(demand, extra)
    if conflicts:
        raise _refuse(conflicts, [], "cannot extend")
    reservation.ends_at = new_end
    if reservation.warned_at and new_end - utcnow() > dt.timedelta(minutes=settings.reservation_warning_minutes):
        reservation.warned_at = None  # warned again before the new end
    await _hold(session, reservation, list(items), "cannot extend")
    moved = await binding.follow(session, settings, reservation, old_end, caller.actor)
    await record(session, actor=caller.actor, action="reservation.extend", outcome="ok", resource_id=reservation.id,
                 project_id=reservation.project_id, experiment_id=reservation.experiment_id,
                 ends_at=new_end.isoformat(), previous_end=old_end.isoformat(), extended=moved)
    return reservation


async def cancel(session: AsyncSession, queue: procrastinate.App, caller: Caller, reservation: Reservation,
                 reason: str) -> Reservation:
    """Cancel a reservation: its items and capacity are free from now, and what runs inside
    it is deleted. An admin cancelling another project's reservation gives the reason its
    owner will read."""
    _must_be_live(reservation)
    foreign = reservation.project_id not in caller.project_ids
    if foreign and not reason.strip():
        raise Invalid("reason: give the reason the owner will read")
    now = utcnow()
    await session.execute(
        update(ReservedEquipment).where(ReservedEquipment.reservation_id == reservation.id)
        .values(period=ReservedEquipment.period.op("*")(func.tstzrange(None, now))))
    reservation.status, reservation.cancelled_at = CANCELLED, now
    reservation.cancelled_by, reservation.cancel_reason = caller.actor, reason.strip() or None
    released = await binding.release(session, queue, reservation, caller.actor)
    await record(session, actor=caller.actor, action="reservation.cancel", outcome="ok", resource_id=reservation.id,
                 project_id=reservation.project_id, experiment_id=reservation.experiment_id,
                 message=reservation.cancel_reason, by_admin=foreign and caller.is_admin, released=released)
    return reservation


# ---- the clock -------------------------------------------------------------------------

async def _start(session: AsyncSession, settings: Settings, reservation: Reservation) -> None:
    """Mark the reservation active and make what waited for its start."""
    reservation.status = ACTIVE
    made = await binding.start(session, settings, reservation)
    await record(session, actor=CLOCK, action="reservation.start", outcome="ok",
                 resource_id=reservation.id, project_id=reservation.project_id,
                 experiment_id=reservation.experiment_id, ends_at=reservation.ends_at.isoformat(), made=made)


async def advance(session: AsyncSession, settings: Settings, queue: procrastinate.App) -> dict[str, int]:
    """Start the reservations whose start has come, warn those ending within
    ``reservation_warning_minutes`` (naming what will be deleted then), end those whose end
    has passed, deleting what runs inside them (each an audit event)."""
    now = utcnow()
    warn_before = dt.timedelta(minutes=settings.reservation_warning_minutes)
    due = await session.scalars(
        select(Reservation).where((Reservation.status == SCHEDULED) & (Reservation.starts_at <= now)
                                  | (Reservation.status == ACTIVE) & Reservation.warned_at.is_(None)
                                  & (Reservation.ends_at - warn_before <= now)
                                  | Reservation.status.in_(LIVE) & (Reservation.ends_at <= now))
        .order_by(Reservation.id).with_for_update(skip_locked=True))
    counts = {"started": 0, "warned": 0, "ended": 0}
    for reservation in due:
        fields = {"resource_id": reservation.id, "project_id": reservation.project_id,
                  "experiment_id": reservation.experiment_id}
        if reservation.ends_at <= now:
            reservation.status = ENDED
            released = await binding.release(session, queue, reservation, CLOCK)
            await record(session, actor=CLOCK, action="reservation.end", outcome="ok", released=released,
                         message=f"deleted: {', '.join(released)}" if released else None, **fields)
            counts["ended"] += 1
            continue
        if reservation.status == SCHEDULED:
            await _start(session, settings, reservation)
            counts["started"] += 1
        if reservation.warned_at is None and reservation.ends_at - warn_before <= now:
            reservation.warned_at = now
            minutes = (reservation.ends_at - now).total_seconds() / 60
            doomed = (await binding.bound(session, [reservation.id])).get(reservation.id, [])
            then = f"; deleted then: {', '.join(doomed)}" if doomed else ""
            await record(session, actor=CLOCK, action="reservation.ending_soon", outcome="warning", bound=doomed,
                         message=f"ends in {minutes:.1f} minutes ({reservation.ends_at.isoformat()}){then}", **fields)
            counts["warned"] += 1
    return counts
