"""The calendar a reservation request is checked against, in memory: which equipment items
are held when, and how much microVM host capacity is reserved when.

It answers whether a request fits a window (and what is in the way if not), which free
items of a kind to take, and the next start times at which a request would fit. Start
times are tried at the earliest allowed instant, at every end of a reservation in the way,
and on every quarter hour (UTC) in between, so answers are both exact (a slot opens the
second another ends) and regular (10:00, 10:15, ...).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

SLOT = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Window:
    """``[start, end)``."""

    start: dt.datetime
    end: dt.datetime

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return start < self.end and self.start < end

    def shifted_to(self, start: dt.datetime) -> Window:
        return Window(start, start + (self.end - self.start))


@dataclass(frozen=True)
class Share:
    """Host capacity one reservation holds."""

    start: dt.datetime
    end: dt.datetime
    vcpus: int
    ram_mib: int


@dataclass(frozen=True)
class Demand:
    """What a request asks for: items by number, any ``count`` free items per kind, capacity."""

    named: tuple[int, ...] = ()
    kinds: tuple[tuple[str, int], ...] = ()
    vcpus: int = 0
    ram_mib: int = 0

    @property
    def wants_capacity(self) -> bool:
        return self.vcpus > 0 or self.ram_mib > 0


@dataclass
class Calendar:
    """The holdings in the way of one request (the request's own reservation left out)."""

    names: dict[int, str]  # equipment number -> name, for the items the request may take
    pool: dict[str, list[int]]  # kind -> its bookable items, in the order they are taken
    held: dict[int, list[tuple[dt.datetime, dt.datetime]]] = field(default_factory=dict)
    shares: list[Share] = field(default_factory=list)
    capacity: tuple[int, int] = (0, 0)  # the hosts' vCPUs and MiB

    def free(self, number: int, window: Window) -> bool:
        return not any(window.overlaps(s, e) for s, e in self.held.get(number, ()))

    def pick(self, demand: Demand, window: Window) -> list[int] | None:
        """Free items for every "any N of kind" part of ``demand``, or None where too few are."""
        taken: list[int] = []
        for kind, count in demand.kinds:
            free = [n for n in self.pool.get(kind, ()) if n not in demand.named and n not in taken
                    and self.free(n, window)]
            if len(free) < count:
                return None
            taken += free[:count]
        return taken

    def peak(self, window: Window) -> tuple[int, int]:
        """The most vCPUs and MiB reserved at any instant of ``window`` (each at its own peak)."""
        inside = [s for s in self.shares if window.overlaps(s.start, s.end)]
        instants = [window.start, *(s.start for s in inside if s.start > window.start)]
        vcpus = ram = 0
        for t in instants:
            vcpus = max(vcpus, sum(s.vcpus for s in inside if s.start <= t < s.end))
            ram = max(ram, sum(s.ram_mib for s in inside if s.start <= t < s.end))
        return vcpus, ram

    def conflicts(self, demand: Demand, window: Window) -> list[str]:
        """What stands in the way of ``demand`` over ``window`` (empty: it fits)."""
        found = [
            f"{self.names[n]} is reserved {_span(s, e)}"
            for n in demand.named for s, e in self.held.get(n, ()) if window.overlaps(s, e)
        ]
        if demand.kinds and self.pick(demand, window) is None:
            for kind, count in demand.kinds:
                free = [n for n in self.pool.get(kind, ()) if n not in demand.named and self.free(n, window)]
                if len(free) < count:
                    found.append(f"{len(free)} of the {len(self.pool.get(kind, ()))} {kind} items are free "
                                 f"then, {count} asked")
        if demand.wants_capacity:
            vcpus, ram = self.peak(window)
            total_vcpus, total_ram = self.capacity
            if vcpus + demand.vcpus > total_vcpus or ram + demand.ram_mib > total_ram:
                found.append(f"microVM hosts: {vcpus} of {total_vcpus} vCPUs and {ram} of {total_ram} MiB "
                             f"are reserved then, {demand.vcpus} vCPUs and {demand.ram_mib} MiB asked")
        return found

    def fits(self, demand: Demand, window: Window) -> bool:
        return not self.conflicts(demand, window)

    def next_starts(self, demand: Demand, window: Window, until: dt.datetime, limit: int) -> list[Window]:
        """Up to ``limit`` windows as long as ``window``, starting at or after its start and
        ending by ``until``, in which ``demand`` fits (earliest first)."""
        found: list[Window] = []
        for start in self._candidates(window.start, until - (window.end - window.start)):
            slot = window.shifted_to(start)
            if self.fits(demand, slot):
                found.append(slot)
                if len(found) == limit:
                    break
        return found

    def _candidates(self, earliest: dt.datetime, latest: dt.datetime) -> Iterator[dt.datetime]:
        ends = {e for spans in self.held.values() for _, e in spans} | {s.end for s in self.shares}
        if latest < earliest:
            return
        quarter = _ceil(earliest)
        grid = (quarter + i * SLOT for i in range(max(0, (latest - quarter) // SLOT + 1)))
        yield from sorted({earliest, *(t for t in ends if earliest < t <= latest), *grid})


def _ceil(t: dt.datetime) -> dt.datetime:
    """``t`` rounded up to a quarter hour (UTC)."""
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    steps = -((epoch - t) // SLOT)
    return epoch + steps * SLOT


def _span(start: dt.datetime, end: dt.datetime) -> str:
    return f"{start.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} to {end.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
