"""The reservations' in-memory calendar: peaks of capacity shares, picks, candidate starts."""

from __future__ import annotations

import datetime as dt

from slices_blueprint.reservations.calendar import Calendar, Demand, Share, Window

T = dt.datetime(2030, 1, 7, 9, 7, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def test_the_peak_is_the_most_reserved_at_one_instant_not_the_sum_of_all() -> None:
    calendar = Calendar(names={}, pool={}, capacity=(16, 1024),
                        shares=[Share(T, T + H, 8, 100), Share(T + H, T + 2 * H, 8, 100), Share(T + H / 2, T + 2 * H, 4, 50)])
    assert calendar.peak(Window(T, T + 2 * H)) == (12, 150)  # 8+4 at T+30m and at T+1h, never 20
    assert calendar.peak(Window(T + 2 * H, T + 3 * H)) == (0, 0)
    assert calendar.fits(Demand(vcpus=4), Window(T, T + 2 * H))
    assert not calendar.fits(Demand(vcpus=5), Window(T, T + 2 * H))


def test_a_pick_skips_named_and_held_items() -> None:
    calendar = Calendar(names={1: "a", 2: "b", 3: "c"}, pool={"k": [1, 2, 3]}, held={2: [(T, T + H)]})
    assert calendar.pick(Demand(named=(1,), kinds=(("k", 1),)), Window(T, T + H)) == [3]
    assert calendar.pick(Demand(named=(1,), kinds=(("k", 2),)), Window(T, T + H)) is None
    assert calendar.pick(Demand(kinds=(("k", 3),)), Window(T + H, T + 2 * H)) == [1, 2, 3]  # [start, end)


def test_starts_are_tried_at_the_earliest_instant_exact_ends_and_quarter_hours() -> None:
    calendar = Calendar(names={1: "a"}, pool={}, held={1: [(T + H, T + 2 * H + dt.timedelta(seconds=1))]})
    slots = calendar.next_starts(Demand(named=(1,)), Window(T, T + H), T + 4 * H, 4)
    eleven = dt.datetime(2030, 1, 7, 11, tzinfo=dt.UTC)
    assert [s.start for s in slots] == [T, T + 2 * H + dt.timedelta(seconds=1),  # 9:07, then 11:07:01
                                        eleven + dt.timedelta(minutes=15), eleven + dt.timedelta(minutes=30)]
    assert calendar.next_starts(Demand(named=(1,)), Window(T, T + 5 * H), T + 4 * H, 4) == []  # past the horizon
