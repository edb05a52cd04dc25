"""The reservations' clock: a reservation becomes active at its start, is warned about
``reservation_warning_minutes`` before its end (3 s here) and ends at its end, each an
audit event."""

from __future__ import annotations

import datetime as dt

import psycopg

from tests.helpers import wait_for
from tests.reservations.conftest import OwnApi


def test_the_clock_starts_warns_and_ends_a_reservation(api: OwnApi, resv_live, unique: str) -> None:
    (item,) = api.equipment(f"fpga-{unique}", f"board-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    booked = api.reserve(token, start, 8 / 3600, equipment=[item["name"]])  # 8 s
    assert booked["status"] == "scheduled" and not booked["ending_soon"]
    path = f"/reservations/{booked['id']}"

    def state() -> dict:
        return api.ok("GET", path, token)

    active = wait_for(lambda: (s := state())["status"] == "active" and s, 15, "the reservation active")
    assert 0 < active["seconds_left"] <= 8
    warned = wait_for(lambda: (s := state())["ending_soon"] and s, 15, "the warning before the end")
    assert warned["status"] == "active"
    ended = wait_for(lambda: (s := state())["status"] == "ended" and s, 15, "the reservation ended")
    assert ended["seconds_left"] == 0

    with psycopg.connect(resv_live.settings.database_url) as conn:
        rows = conn.execute("SELECT action, at, message FROM events WHERE project_id = %s AND action LIKE"
                            " 'reservation.%%' ORDER BY id", (booked["project_id"],)).fetchall()
    actions = [a for a, _, _ in rows]
    assert actions == ["reservation.create", "reservation.start", "reservation.ending_soon", "reservation.end"]
    at = {a: t for a, t, _ in rows}
    ends = dt.datetime.fromisoformat(booked["ends_at"])
    assert at["reservation.start"] >= start
    assert ends - dt.timedelta(seconds=3) <= at["reservation.ending_soon"] < ends
    assert at["reservation.end"] >= ends
    assert "ends in" in rows[2][2]


def test_a_reservation_starting_now_is_active_at_once(api: OwnApi, unique: str) -> None:
    (item,) = api.equipment(f"fpga-{unique}", f"board-{unique}")
    booked = api.ok("POST", "/reservations", api.token("alice", f"a-{unique}"),
                    201, json={"equipment": [item["name"]], "hours": 1})
    assert booked["status"] == "active" and booked["experiment_id"] is None  # a project-wide one
