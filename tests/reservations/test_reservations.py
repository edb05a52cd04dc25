"""Reservations of equipment over real HTTP on real PostgreSQL: conflicts refused with the
next free windows, picks of "any N of a kind", extensions, limits, cancellation, scoping."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tests.reservations.conftest import OwnApi, day

H = dt.timedelta(hours=1)


def test_equipment_is_registered_by_admins_and_hidden_items_are_not_bookable(api: OwnApi, unique: str) -> None:
    kind = f"fpga-{unique}"
    user = api.token("alice", f"p-{unique}")
    body = {"kind": kind, "name": f"board-{unique}", "attributes": {"model": "u280"}}
    assert api.call("POST", "/equipment", user, json=body).status_code == 403
    board = api.ok("POST", "/equipment", api.token("admin"), 201, json=body)
    assert board["id"].startswith("equipment_test-site1_") and board["site"] == "test-site1"
    assert api.call("POST", "/equipment", api.token("admin"), json=body).status_code == 409
    assert [e["name"] for e in api.ok("GET", "/equipment", user, params={"kind": kind})] == [board["name"]]

    api.ok("PATCH", f"/equipment/{board['id']}", api.token("admin"), json={"hidden": True})
    assert api.ok("GET", "/equipment", user, params={"kind": kind}) == []
    refused = api.call("POST", "/reservations", user, json={"equipment": [board["name"]], "hours": 1})
    assert refused.status_code == 422 and "no bookable equipment" in refused.json()["detail"]


def test_an_overlapping_reservation_is_refused_with_the_next_free_windows(api: OwnApi, unique: str) -> None:
    (spool,) = api.equipment(f"fibre-spool-{unique}", f"spool-{unique}", length_km=25)
    start = day(3, minutes=7)  # off the quarter-hour grid: the first free window is an exact end
    first = api.reserve(api.token("alice", f"a-{unique}", "e1"), start, 2, equipment=[spool["name"]])
    assert first["status"] == "scheduled" and [i["name"] for i in first["equipment"]] == [spool["name"]]

    other = api.token("bob", f"b-{unique}", "e2")
    refused = api.call("POST", "/reservations", other,
                       json={"equipment": [spool["name"]], "starts_at": (start + H).isoformat(), "hours": 2})
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["conflicts"] == [(f"{spool['name']} is reserved {start:%Y-%m-%d %H:%M:%S} to "
                                    f"{start + 2 * H:%Y-%m-%d %H:%M:%S} UTC")]
    starts = [dt.datetime.fromisoformat(a["starts_at"]) for a in problem["alternatives"]]
    assert starts[0] == start + 2 * H  # the second the first reservation ends
    assert starts[1:] == [start + 2 * H + dt.timedelta(minutes=8 + 15 * i) for i in range(4)]  # then the grid

    adjacent = api.reserve(other, start + 2 * H, 1, equipment=[spool["name"]])  # [start, end): no overlap
    assert adjacent["starts_at"] == first["ends_at"]


def test_the_exclusion_constraint_refuses_an_overlap_written_around_the_service(
        api: OwnApi, resv_live, unique: str) -> None:
    (item,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    api.reserve(api.token("alice", f"a-{unique}", "e"), day(4), 2, equipment=[item["name"]])
    with psycopg.connect(resv_live.settings.database_url) as conn:
        number, reservation = conn.execute(
            "SELECT e.number, r.reservation_id FROM equipment e JOIN reserved_equipment r"
            " ON r.equipment_number = e.number WHERE e.name = %s", (item["name"],)).fetchone()
        (twin,) = conn.execute(
            "INSERT INTO reservations (id, project_id, starts_at, ends_at, status, vcpus, ram_mib, request)"
            " SELECT gen_random_uuid(), project_id, starts_at, ends_at, 'scheduled', 0, 0, '{}'"
            " FROM reservations WHERE id = %s RETURNING id", (reservation,)).fetchone()
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute("INSERT INTO reserved_equipment (reservation_id, equipment_number, period)"
                         " SELECT %s, %s, tstzrange(starts_at + interval '1 hour', ends_at + interval '1 hour')"
                         " FROM reservations WHERE id = %s", (twin, number, twin))


def test_any_n_of_a_kind_takes_free_items(api: OwnApi, unique: str) -> None:
    kind = f"fpga-{unique}"
    names = [f"{kind}-{i}" for i in range(3)]
    api.equipment(kind, *names)
    token = api.token("alice", f"a-{unique}", "e")
    start = day(5)
    api.reserve(token, start, 2, equipment=[names[1]])
    two = api.reserve(token, start + H, 2, any_of=[{"kind": kind, "count": 2}])
    assert sorted(i["name"] for i in two["equipment"]) == [names[0], names[2]]
    assert two["request"]["any_of"] == [{"kind": kind, "count": 2}]
    refused = api.call("POST", "/reservations", token, json={
        "starts_at": (start + H).isoformat(), "hours": 1, "any_of": [{"kind": kind, "count": 1}]})
    assert refused.status_code == 409
    assert refused.json()["conflicts"] == [f"0 of the 3 {kind} items are free then, 1 asked"]
    assert api.call("POST", "/reservations", token, json={
        "hours": 1, "any_of": [{"kind": kind, "count": 4}]}).status_code == 422  # never possible


def test_availability_answers_the_next_slot(api: OwnApi, unique: str) -> None:
    kind = f"fibre-spool-{unique}"
    a, b = f"{kind}-a", f"{kind}-b"
    api.equipment(kind, a, b)
    token = api.token("alice", f"a-{unique}", "e")
    t = day(6, minutes=7)
    api.reserve(token, t + H, 2, equipment=[a])      # a: [t+1h, t+3h)
    api.reserve(token, t + 2 * H, 3, equipment=[b])  # b: [t+2h, t+5h)

    def starts(**params) -> list[dt.datetime]:
        answer = api.ok("GET", "/reservations/availability", token, params={"after": t.isoformat(), **params})
        return [dt.datetime.fromisoformat(s["starts_at"]) for s in answer["slots"]]

    assert starts(kind=kind, count=2, hours=2, limit=2) == [t + 5 * H, t + 5 * H + dt.timedelta(minutes=8)]
    assert starts(kind=kind, count=2, hours=1, limit=1) == [t]
    assert starts(kind=kind, count=1, hours=2, limit=1) == [t]  # b is free until t+2h
    assert starts(equipment=[a], hours=2, limit=2) == [t + 3 * H, t + 3 * H + dt.timedelta(minutes=8)]
    assert starts(equipment=[a], hours=0.5, limit=3) == [t, t + dt.timedelta(minutes=8), t + dt.timedelta(minutes=23)]


def test_extending_succeeds_only_where_the_calendar_is_free(api: OwnApi, unique: str) -> None:
    (item,) = api.equipment(f"fpga-{unique}", f"board-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    t = day(7)
    mine = api.reserve(token, t, 1, equipment=[item["name"]])
    api.reserve(api.token("bob", f"b-{unique}", "e"), t + 2 * H, 1, equipment=[item["name"]])

    refused = api.call("POST", f"/reservations/{mine['id']}/extend", token, json={"hours": 1.5})
    assert refused.status_code == 409
    assert f"{item['name']} is reserved {t + 2 * H:%Y-%m-%d %H:%M:%S}" in refused.json()["detail"]
    assert api.ok("GET", f"/reservations/{mine['id']}", token)["ends_at"] == mine["ends_at"]

    extended = api.ok("POST", f"/reservations/{mine['id']}/extend", token, json={"hours": 1})
    assert dt.datetime.fromisoformat(extended["ends_at"]) == t + 2 * H  # up to the next one's start
    assert api.call("POST", f"/reservations/{mine['id']}/extend", token,
                    json={"ends_at": t.isoformat()}).status_code == 422  # earlier than the end


def test_the_reserved_hours_limit(api: OwnApi, unique: str) -> None:
    project = f"lim-{unique}"
    user = api.token("carol", project)
    project_id = api.ok("GET", "/reservation-limits", user)[0]["project_id"]
    assert api.call("PUT", f"/reservation-limits/{project_id}", user, json={"max_hours": 3}).status_code == 403
    api.ok("PUT", f"/reservation-limits/{project_id}", api.token("admin"), json={"max_hours": 3})
    api.equipment(f"fpga-{unique}", f"x-{unique}", f"y-{unique}")
    t = day(8)
    first = api.reserve(user, t, 2, equipment=[f"x-{unique}"])

    refused = api.call("POST", "/reservations", user, json={"starts_at": (t + 3 * H).isoformat(), "hours": 1,
                                                             "equipment": [f"x-{unique}", f"y-{unique}"]})
    assert refused.status_code == 403
    assert refused.json()["quota"] == [{"limit": "reserved_hours", "used": 2.0, "requested": 2.0, "allowed": 3}]
    api.ok("POST", f"/reservations/{first['id']}/extend", user, json={"hours": 1})
    assert api.call("POST", f"/reservations/{first['id']}/extend", user, json={"hours": 0.5}).status_code == 403
    limit = api.ok("GET", f"/reservation-limits/{project_id}", user)
    assert (limit["max_hours"], limit["reserved_hours"], limit["override"]) == (3, 3.0, {"max_hours": 3})
    api.ok("POST", f"/reservations/{first['id']}/cancel", user, json={})
    assert api.ok("GET", f"/reservation-limits/{project_id}", user)["reserved_hours"] == 0  # cancelled: not held
    api.ok("PUT", f"/reservation-limits/{project_id}", api.token("admin"), json={})
    assert api.ok("GET", f"/reservation-limits/{project_id}", user)["max_hours"] is None  # the site default


def test_an_admin_cancels_with_a_reason_the_owner_reads(api: OwnApi, resv_live, unique: str) -> None:
    (item,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    owner = api.token("dave", f"d-{unique}", "e")
    t = day(9)
    booked = api.reserve(owner, t, 4, equipment=[item["name"]])
    admin = api.token("admin")
    assert booked["id"] in [r["id"] for r in api.ok("GET", "/reservations", admin)]
    path = f"/reservations/{booked['id']}/cancel"
    assert api.call("POST", path, admin, json={}).status_code == 422  # the owner must be told why
    api.ok("POST", path, admin, json={"reason": "device pair recalibration"})

    seen = api.ok("GET", f"/reservations/{booked['id']}", owner)
    assert (seen["status"], seen["cancel_reason"], seen["seconds_left"]) == ("cancelled", "device pair recalibration", 0)
    assert seen["cancelled_by"].startswith("user_dev.local_")
    assert api.call("POST", path, owner, json={}).status_code == 409  # cancelled already
    assert booked["id"] not in [r["id"] for r in api.ok("GET", "/reservations", owner)]
    assert booked["id"] in [r["id"] for r in api.ok("GET", "/reservations", owner, params={"include_past": True})]
    with psycopg.connect(resv_live.settings.database_url) as conn:
        events = conn.execute("SELECT message, detail->>'by_admin' FROM events WHERE action = 'reservation.cancel'"
                              " AND project_id = %s", (seen["project_id"],)).fetchall()
    assert events == [("device pair recalibration", "true")]
    api.reserve(api.token("erin", f"e-{unique}", "e"), t, 4, equipment=[item["name"]])  # free again


def test_another_projects_reservation_is_not_found(api: OwnApi, unique: str) -> None:
    (item,) = api.equipment(f"fpga-{unique}", f"board-{unique}")
    mine = api.reserve(api.token("alice", f"a-{unique}", "e"), day(10), 1, equipment=[item["name"]])
    for stranger in (api.token("mallory", f"m-{unique}", "e"), api.token("mallory", f"m-{unique}")):
        assert api.call("GET", f"/reservations/{mine['id']}", stranger).status_code == 404
        assert api.call("POST", f"/reservations/{mine['id']}/extend", stranger, json={"hours": 1}).status_code == 404
        assert api.call("POST", f"/reservations/{mine['id']}/cancel", stranger, json={}).status_code == 404
        assert api.ok("GET", "/reservations", stranger) == []
    project_user = api.token("alice", f"a-{unique}")  # the project's member sees the experiment's
    assert api.ok("GET", f"/reservations/{mine['id']}", project_user)["id"] == mine["id"]
