"""Resources and QKD networks running inside a reservation, over real HTTP on real
PostgreSQL with the test-double provider: created at its start (waiting, with the reason,
until then), refused outside it, expiring at its end at the latest, named in the warning
before it ends, and deleted at its end (the clock ticks every second; the warning comes 3 s
before the end)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest

from slices_blueprint.core.ids import parse_id
from tests.helpers import Api, wait_for
from tests.reservations.conftest import OwnApi, add_host, day

S = dt.timedelta(seconds=1)


@pytest.fixture(scope="module")
def catalog(bi: Api) -> tuple[str, str]:
    return bi.test_double_catalog()


def _events(database_url: str, action_like: str, resource_id: str | None = None) -> list[tuple]:
    """(action, actor, at, message, detail) of the audit events matching, oldest first."""
    query = "SELECT action, actor, at, message, detail FROM events WHERE action LIKE %s"
    params: list[Any] = [action_like]
    if resource_id:
        query += " AND resource_id = %s"
        params.append(resource_id)
    with psycopg.connect(database_url) as conn:
        return conn.execute(query + " ORDER BY id", params).fetchall()


def _uuid(api_id: str) -> str:
    """The database id behind an API id."""
    return str(parse_id(api_id, api_id.split("_", 1)[0]))


def test_a_resource_waits_for_its_reservation_runs_inside_it_and_is_deleted_at_its_end(
        api: OwnApi, bi: Api, resv_live, catalog: tuple[str, str], unique: str) -> None:
    flavor, image = catalog
    (item,) = api.equipment(f"fpga-{unique}", f"board-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    start = dt.datetime.now(dt.UTC) + 5 * S
    booked = api.reserve(token, start, 12 / 3600, equipment=[item["name"]])  # 12 s
    ends = dt.datetime.fromisoformat(booked["ends_at"])

    batch = bi.create(token, [f"vm-{unique}"], flavor, image, reservation_id=booked["id"])
    (resource,) = bi.ok("GET", "/resources", token)
    assert resource["status"] == "pending" and resource["reservation_id"] == booked["id"]
    assert resource["status_reason"].startswith(f"waiting for reservation {booked['id']}")
    assert f"starting at {start:%Y-%m-%d %H:%M:%S} UTC" in resource["status_reason"]
    assert dt.datetime.fromisoformat(resource["expires_at"]) == ends  # capped at the reservation's end
    assert api.ok("GET", f"/reservations/{booked['id']}", token)["bound"] == [f"resource vm-{unique}"]

    running = wait_for(lambda: (r := bi.ok("GET", f"/resources/{resource['id']}", token))["status"] == "running"
                       and r, 20, "the resource running")
    assert running["status_reason"] is None
    task = bi.ok("GET", f"/tasks/{batch['id']}", token)
    assert task["status"] == "succeeded"
    made = [at for _, actor, at, _, _ in _events(resv_live.settings.database_url, "resource.create",
                                                  _uuid(resource["id"])) if actor == "system:worker"]
    assert made and made[0] >= start, "the create did not wait for the reservation's start"

    wait_for(lambda: bi.ok("GET", f"/resources/{resource['id']}", token)["status"] == "deleted", 25,
             "the resource deleted at the reservation's end")
    rows = _events(resv_live.settings.database_url, "reservation.%", _uuid(booked["id"]))
    actions = {action: (message, detail, at) for action, _, at, message, detail in rows}
    assert f"deleted then: resource vm-{unique}" in actions["reservation.ending_soon"][0]
    assert actions["reservation.ending_soon"][1]["bound"] == [f"resource vm-{unique}"]
    assert actions["reservation.end"][1]["released"] == [f"resource vm-{unique}"]
    assert actions["reservation.end"][2] >= ends
    deletes = _events(resv_live.settings.database_url, "resource.delete", _uuid(resource["id"]))
    assert deletes[0][1] == "system:reservations"  # the clock, not the reaper (the expiry is the same instant)
    assert api.ok("GET", f"/reservations/{booked['id']}", token)["bound"] == []


def test_a_reservation_that_ended_was_cancelled_or_is_another_projects_is_refused(
        api: OwnApi, bi: Api, catalog: tuple[str, str], unique: str) -> None:
    flavor, image = catalog
    (a, b) = api.equipment(f"fpga-{unique}", f"a-{unique}", f"b-{unique}")
    token = api.token("alice", f"a-{unique}", "e")

    cancelled = api.reserve(token, day(6), 1, equipment=[a["name"]])
    api.ok("POST", f"/reservations/{cancelled['id']}/cancel", token, json={})
    refused = bi.call("POST", "/resources", token, json=_body(flavor, image, "vm1", cancelled["id"]))
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith(f"reservation {cancelled['id']}") and "is cancelled" in refused.text

    short = api.reserve(token, dt.datetime.now(dt.UTC), 2 / 3600, equipment=[b["name"]])  # 2 s, from now
    wait_for(lambda: api.ok("GET", f"/reservations/{short['id']}", token)["status"] == "ended", 15, "it ended")
    refused = bi.call("POST", "/resources", token, json=_body(flavor, image, "vm2", short["id"]))
    assert refused.status_code == 409 and "is ended" in refused.json()["detail"]

    others = api.reserve(api.token("bob", f"b-{unique}", "e"), day(6), 1, equipment=[b["name"]])
    sibling = api.reserve(api.token("alice", f"a-{unique}", "e2"), day(7), 1, equipment=[b["name"]])
    for foreign in (others, sibling):  # another project's, another experiment's of the same project
        missing = bi.call("POST", "/resources", token, json=_body(flavor, image, "vm3", foreign["id"]))
        assert missing.status_code == 404 and missing.json()["detail"] == "no such reservation"
    assert bi.call("POST", "/resources", token, json=_body(flavor, image, "vm4", "nope")).status_code == 422
    assert bi.ok("GET", "/resources", token) == []

    project_wide = api.reserve(api.token("alice", f"a-{unique}"), day(8), 1, equipment=[a["name"]])
    assert project_wide["experiment_id"] is None
    asked = day(8) + dt.timedelta(hours=5)
    bi.create(token, ["vm5"], flavor, image, reservation_id=project_wide["id"], expires_at=asked.isoformat())
    (made,) = bi.ok("GET", "/resources", token)
    assert made["expires_at"] == project_wide["ends_at"]  # capped at the reservation's end


def test_microvms_must_fit_the_capacity_held_and_cancelling_deletes_what_waits(
        api: OwnApi, bi: Api, resv_live, unique: str) -> None:
    add_host(resv_live.settings.database_url, vcpus=4, memory_mib=4096)
    admin = api.token("admin")
    flavor = bi.ok("POST", "/flavors", admin, 201, json={
        "friendly_name": f"mv-{unique}", "flavor_type": "microvm", "vcpus": 1, "ram_mib": 512, "disk_mb": 1024})
    image = bi.ok("POST", "/disk-images", admin, 201, json={
        "friendly_name": f"alpine-{unique}", "flavor_type": "microvm", "location": f"https://127.0.0.1:1/{unique}.img",
        "default_username": "root", "min_ram_mib": 128})
    token = api.token("alice", f"a-{unique}", "e")
    booked = api.reserve(token, day(9), 1, vcpus=1, ram_mib=512)

    too_big = bi.call("POST", "/resources", token,
                          json={**_body(flavor["id"], image["id"], "m1", booked["id"]), "resources": [
                              _spec(flavor["id"], image["id"], n) for n in ("m1", "m2")]})
    assert too_big.status_code == 409 and "holds 1 vCPUs and 512 MiB" in too_big.json()["detail"]
    bi.create(token, ["m1"], flavor["id"], image["id"], reservation_id=booked["id"])
    (waiting,) = bi.ok("GET", "/resources", token)
    assert waiting["status"] == "pending" and "waiting for reservation" in waiting["status_reason"]
    full = bi.call("POST", "/resources", token, json=_body(flavor["id"], image["id"], "m2", booked["id"]))
    assert full.status_code == 409, full.text

    api.ok("POST", f"/reservations/{booked['id']}/cancel", token, json={})
    assert bi.ok("GET", f"/resources/{waiting['id']}", token)["status"] == "deleted"
    (cancel,) = _events(resv_live.settings.database_url, "reservation.cancel", _uuid(booked["id"]))
    assert cancel[4]["released"] == ["resource m1"]


def test_a_qkd_network_waits_for_its_reservation_runs_inside_it_and_is_deleted_at_its_end(
        api: OwnApi, bi: Api, resv_live, unique: str) -> None:
    (pair,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    description = {"name": f"n-{unique[:6]}", "nodes": [{"name": "alice", "saes": ["a"]}, {"name": "bob", "saes": ["b"]}],
                   "links": [{"between": ["alice", "bob"], "length_km": 10}]}
    later = api.reserve(token, day(10), 1, equipment=[pair["name"]])
    waiting = bi.ok("POST", "/qkd-networks", token, 201,
                    json={**description, "name": "later", "reservation_id": later["id"]})
    assert waiting["status"] == "pending" and waiting["nodes"] == [] and waiting["links"] == []
    assert waiting["status_reason"] == (f"waiting for reservation {later['id']} ({day(10):%Y-%m-%d %H:%M:%S} UTC to "
                                        f"{day(10) + dt.timedelta(hours=1):%Y-%m-%d %H:%M:%S} UTC) starting at "
                                        f"{day(10):%Y-%m-%d %H:%M:%S} UTC")
    api.ok("POST", f"/reservations/{later['id']}/cancel", token, json={})  # what waits goes with it
    assert bi.ok("GET", f"/qkd-networks/{waiting['id']}", token)["status"] == "deleted"

    start = dt.datetime.now(dt.UTC) + 4 * S
    soon = api.reserve(token, start, 30 / 3600, equipment=[pair["name"]])  # 30 s, from 4 s ahead
    network = bi.ok("POST", "/qkd-networks", token, 201, json={**description, "reservation_id": soon["id"]})
    assert network["status"] == "pending" and network["status_reason"].startswith(f"waiting for reservation {soon['id']}")
    assert network["reservation_id"] == soon["id"] and network["expires_at"] == soon["ends_at"]
    assert api.ok("GET", f"/reservations/{soon['id']}", token)["bound"] == [f"qkd network {description['name']}"]
    taken = bi.call("POST", "/qkd-networks", token, json=description)
    assert taken.status_code == 409, taken.text  # a waiting network holds its name

    running = wait_for(lambda: (n := bi.ok("GET", f"/qkd-networks/{network['id']}", token))["status"] == "active"
                       and n, 30, "the network made at the reservation's start")
    assert running["status_reason"] is None and [n["name"] for n in running["nodes"]] == ["alice", "bob"]
    assert running["links"][0]["state"] == "generating" and len(running["saes"]) == 2
    (started,) = _events(resv_live.settings.database_url, "qkd_network.start", _uuid(network["id"]))
    assert started[1] == "system:reservations" and started[2] >= start
    (reservation_start,) = _events(resv_live.settings.database_url, "reservation.start", _uuid(soon["id"]))
    assert reservation_start[4]["made"] == [f"qkd network {description['name']}"]

    wait_for(lambda: bi.ok("GET", f"/qkd-networks/{network['id']}", token)["status"] == "deleted", 60,
             "the network deleted at the reservation's end")
    (end,) = [e for e in _events(resv_live.settings.database_url, "reservation.end", _uuid(soon["id"]))]
    assert end[4]["released"] == [f"qkd network {description['name']}"]
    (deleted,) = _events(resv_live.settings.database_url, "qkd_network.delete", _uuid(network["id"]))
    assert deleted[1] == "system:reservations"


def test_a_waiting_qkd_network_that_cannot_be_made_at_the_start_fails_with_the_reason(
        api: OwnApi, bi: Api, resv_live, unique: str) -> None:
    (pair,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    assert resv_live.settings.qkd_max_kmes_per_project == 32

    def sixteen(name: str, reservation: dict | None, count: int = 16) -> dict:
        nodes = [{"name": f"k{i}", "saes": [f"{name}{i}"]} for i in range(count)]
        return {"name": name, "nodes": nodes, "links": [{"between": ["k0", "k1"], "length_km": 5}],
                "reservation_id": reservation and reservation["id"]}

    bi.ok("POST", "/qkd-networks", token, 201, json=sixteen("now", None))  # 16 of 32 KMEs used
    start = dt.datetime.now(dt.UTC) + 10 * S
    soon = api.reserve(token, start, 60 / 3600, equipment=[pair["name"]])
    big = bi.ok("POST", "/qkd-networks", token, 201, json=sixteen("big", soon))  # each fits now: accepted
    small = bi.ok("POST", "/qkd-networks", token, 201, json=sixteen("small", soon, 2))
    assert big["status"] == small["status"] == "pending"
    failed = wait_for(lambda: (n := bi.ok("GET", f"/qkd-networks/{small['id']}", token))["status"] == "failed"
                      and n, 40, "the second network refused at the start")
    assert "over its QKD quota: 32 KMEs used + 2 requested > 32 allowed" in failed["status_reason"]
    assert bi.ok("GET", f"/qkd-networks/{big['id']}", token)["status"] == "active"
    (event,) = _events(resv_live.settings.database_url, "qkd_network.start", _uuid(small["id"]))
    assert event[3] == failed["status_reason"]


def test_extending_a_reservation_extends_what_runs_until_its_end(
        api: OwnApi, bi: Api, resv_live, catalog: tuple[str, str], unique: str) -> None:
    flavor, image = catalog
    (pair,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    booked = api.reserve(token, dt.datetime.now(dt.UTC), 30 / 3600, equipment=[pair["name"]])  # 30 s, from now
    old_end = dt.datetime.fromisoformat(booked["ends_at"])
    bi.create(token, ["follows"], flavor, image, reservation_id=booked["id"])
    earlier = old_end - 15 * S
    bi.create(token, ["stays"], flavor, image, reservation_id=booked["id"], expires_at=earlier.isoformat())
    network = bi.ok("POST", "/qkd-networks", token, 201, json={
        "name": f"n-{unique[:6]}", "nodes": [{"name": "a", "saes": ["a"]}, {"name": "b", "saes": ["b"]}],
        "links": [{"between": ["a", "b"], "length_km": 10}], "reservation_id": booked["id"]})
    assert network["expires_at"] == booked["ends_at"]

    extended = api.ok("POST", f"/reservations/{booked['id']}/extend", token, json={"hours": 1})
    new_end = dt.datetime.fromisoformat(extended["ends_at"])
    assert new_end == old_end + dt.timedelta(hours=1)
    expiries = {r["friendly_name"]: dt.datetime.fromisoformat(r["expires_at"])
                for r in bi.ok("GET", "/resources?include_deleted=true", token)}
    assert expiries == {"follows": new_end, "stays": earlier}  # never anything shortened, nor what ends sooner moved
    assert dt.datetime.fromisoformat(bi.ok("GET", f"/qkd-networks/{network['id']}", token)["expires_at"]) == new_end
    database = resv_live.settings.database_url
    (extend,) = _events(database, "reservation.extend", _uuid(booked["id"]))
    assert extend[4]["extended"] == ["resource follows", f"qkd network n-{unique[:6]}"]
    (moved,) = _events(database, "qkd_network.extend", _uuid(network["id"]))
    assert moved[1] != "system:reservations" and moved[4]["previous"] == old_end.isoformat()
    assert dt.datetime.fromisoformat(moved[4]["granted"]) == new_end

    wait_for(lambda: dt.datetime.now(dt.UTC) > old_end + 3 * S, 40, "the old end passing")
    statuses = {r["friendly_name"]: r["status"] for r in bi.ok("GET", "/resources?include_deleted=true", token)}
    assert statuses["follows"] == "running", statuses  # it runs on past the old end
    assert bi.ok("GET", f"/qkd-networks/{network['id']}", token)["status"] == "active"
    assert api.ok("GET", f"/reservations/{booked['id']}", token)["status"] == "active"


def _spec(flavor: str, image: str, name: str) -> dict[str, Any]:
    return {"friendly_name": name, "flavor_id": flavor, "disk_image_id": image}


def _body(flavor: str, image: str, name: str, reservation_id: str) -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "resources": [_spec(flavor, image, name)], "reservation_id": reservation_id}


def _shows_time_left(text: str, pattern: str, booked: dict[str, Any]) -> None:
    """``text`` shows, as ``pattern``'s days and hours, the time left until ``booked`` ends
    (give or take an hour: the clock moves on while the CLI runs)."""
    found = re.search(pattern, text)
    assert found, text
    shown = int(found.group(1)) * 24 + int(found.group(2))
    left = (dt.datetime.fromisoformat(booked["ends_at"]) - dt.datetime.now(dt.UTC)) / dt.timedelta(hours=1)
    assert abs(shown - left) <= 1, (shown, left, text)


def test_the_cli_shows_the_reservation_and_time_left_and_what_runs_inside(
        api: OwnApi, resv_live, catalog: tuple[str, str], unique: str) -> None:
    flavor, image = catalog
    (item,) = api.equipment(f"fpga-{unique}", f"board-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    booked = api.reserve(token, day(11), 1, equipment=[item["name"]])
    env = {**os.environ, "SLICES_BLUEPRINT_URL": resv_live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
           "SLICES_BLUEPRINT_TOKEN": token, "COLUMNS": "400"}

    def cli(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "slices_blueprint", *args], env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("create", "--name", f"vm-{unique}", "--flavor", flavor, "--image", image, "--reservation", booked["id"],
        "--no-wait")
    listed = cli("list")
    _shows_time_left(listed, rf"(\d+)d (\d+)h in {booked['id'][-8:]}", booked)  # it expires at its end
    assert "waiting for reservation" in listed
    assert f"resource vm-{unique}" in cli("reservations")

    bi = Api(resv_live, api.http)
    bi.ok("POST", "/qkd-networks", token, 201, json={
        "name": "waits", "nodes": [{"name": "a", "saes": ["a"]}, {"name": "b", "saes": ["b"]}],
        "links": [{"between": ["a", "b"], "length_km": 10}], "reservation_id": booked["id"]})
    bi.ok("POST", "/qkd-networks", token, 201, json={
        "name": "outside", "nodes": [{"name": "a", "saes": ["c"]}, {"name": "b", "saes": ["d"]}],
        "links": [{"between": ["a", "b"], "length_km": 10}]})
    rows = {name: line for line in cli("qkd", "list").splitlines() for name in ("waits", "outside")
            if f" {name} " in line}
    _shows_time_left(rows["waits"], rf"pending .*{booked['id']} \((\d+)d (\d+)h left\)", booked)
    assert "reservation_" not in rows["outside"]
