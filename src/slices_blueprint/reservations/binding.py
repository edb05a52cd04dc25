"""What runs inside a reservation: the checks a resource or QKD network naming one must pass,
and the hooks through which the domains above (``resources/``, ``qkd/``) tell the
reservations what is bound to one and delete it at its end.

The hooks are wired at start-up by ``slices_blueprint.domains``; without them a reservation
ends alone (and names nothing in its warning).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import procrastinate
from sqlalchemy import ColumnElement, exists
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Conflict, NotFound
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.identity.caller import Caller
from slices_blueprint.reservations.models import LIVE, Reservation

CLOCK = "system:reservations"  # the actor of the reservations' clock (and what it starts and ends)
BoundLister = Callable[[AsyncSession, list[uuid.UUID]], Awaitable[dict[uuid.UUID, list[str]]]]
"""The live things bound to each of these reservations, as "<kind> <name>" (e.g. "resource vm-1")."""
Releaser = Callable[[AsyncSession, procrastinate.App, Reservation, str], Awaitable[list[str]]]
"""Delete (or request the deletion of) what is bound to the reservation, as ``actor``; answer
what it released, as :data:`BoundLister` names it."""
Starter = Callable[[AsyncSession, Settings, Reservation], Awaitable[list[str]]]
"""Make what waited for the reservation's start (the clock started it); answer what."""
Follower = Callable[[AsyncSession, Settings, Reservation, dt.datetime, str], Awaitable[list[str]]]
"""Move to the reservation's new end the expiry of what was capped at its old end (given),
as ``actor``; answer what moved."""


@dataclass(frozen=True)
class Binder:
    """A domain whose things may run inside a reservation."""

    bound: BoundLister
    release: Releaser
    start: Starter | None = None  # for a domain whose things wait in the database, not in the queue
    follow: Follower | None = None


_binders: dict[str, Binder] = {}


def register_binder(name: str, binder: Binder) -> None:
    """Let ``binder``'s things be bound to reservations (registering ``name`` again replaces it)."""
    _binders[name] = binder


async def bound(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The live things bound to each reservation of ``ids`` (every registered domain's)."""
    found: dict[uuid.UUID, list[str]] = {}
    for binder in _binders.values():
        for reservation_id, names in (await binder.bound(session, ids)).items():
            found.setdefault(reservation_id, []).extend(names)
    return found


async def release(session: AsyncSession, queue: procrastinate.App, reservation: Reservation,
                  actor: str) -> list[str]:
    """Delete everything bound to ``reservation`` (it ended or was cancelled); answer what."""
    return [name for binder in _binders.values() for name in await binder.release(session, queue, reservation, actor)]


async def start(session: AsyncSession, settings: Settings, reservation: Reservation) -> list[str]:
    """Make what waited for ``reservation``'s start (it has started); answer what."""
    return [name for binder in _binders.values() if binder.start
            for name in await binder.start(session, settings, reservation)]


async def follow(session: AsyncSession, settings: Settings, reservation: Reservation, old_end: dt.datetime,
                 actor: str) -> list[str]:
    """``reservation`` was extended from ``old_end``: what ran until then runs until its new
    end (never shortened); answer what moved."""
    return [name for binder in _binders.values() if binder.follow
            for name in await binder.follow(session, settings, reservation, old_end, actor)]


def describe(reservation: Reservation, site: str) -> str:
    """The reservation as messages name it: its API id and window."""
    return (f"reservation {format_id('reservation', site, reservation.id)} "
            f"({_when(reservation.starts_at)} to {_when(reservation.ends_at)})")


async def bindable(session: AsyncSession, caller: Caller, reservation_id: uuid.UUID, site: str) -> Reservation:
    """The reservation something new of the caller's experiment may run inside (locked until
    the transaction ends: it cannot end or be cancelled meanwhile, and what is bound to it
    is counted by one request at a time): one of the experiment's
    or a project-wide one of its project (404 otherwise, as a missing one), scheduled or
    active (409 naming it otherwise)."""
    experiment = caller.require_experiment()
    reservation = await session.get(Reservation, reservation_id, with_for_update=True)
    if reservation is None or reservation.project_id != experiment.project_id or (
            reservation.experiment_id not in (None, experiment.id)):
        raise NotFound("no such reservation")
    if reservation.status not in LIVE or reservation.ends_at <= utcnow():
        status = reservation.status if reservation.status not in LIVE else "ended"
        raise Conflict(f"{describe(reservation, site)} is {status}: nothing more can run inside it",
                       reservation_status=status)
    return reservation


def waiting_reason(reservation: Reservation, site: str) -> str:
    """Why something inside a reservation that has not started waits (its status reason)."""
    return f"waiting for {describe(reservation, site)} starting at {_when(reservation.starts_at)}"


def started(reservation: Reservation) -> bool:
    """Whether the reservation's window has begun (the clock may not have marked it yet)."""
    return reservation.starts_at <= utcnow()


def expiry(reservation: Reservation | None, expires_at: dt.datetime, asked: bool, cap: dt.datetime) -> dt.datetime:
    """The expiry of something running inside ``reservation``: the one ``asked`` for, or
    else the reservation's end; never later than the reservation's end nor ``cap`` (the
    experiment's). ``expires_at`` is the expiry outside any reservation."""
    if reservation is None:
        return expires_at
    return min(expires_at if asked else cap, reservation.ends_at)


def ended_by_the_clock(reservation_id: ColumnElement[uuid.UUID | None],
                       expires_at: ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    """Whether a row's expiry is its live reservation's end: the reservations' clock, not a
    reaper, deletes it then (so the deletion says why, once)."""
    return exists().where(Reservation.id == reservation_id, Reservation.status.in_(LIVE),
                          Reservation.ends_at <= expires_at)


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
