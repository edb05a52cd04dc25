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

import httpx
import psycopg
import pytest

from slices_blueprint.core.ids import parse_id
from tests.conftest import LiveServer
from tests.helpers import Api, wait_for
from tests.reservations.conftest import OwnApi, add_host, day

S = dt.timedelta(seconds=1)


@pytest.fixture(scope="module")
def bi(resv_live: LiveServer, http: httpx.Client) -> Api:
    """A client of the Blueprint Interface routes (resources, tasks, QKD networks)."""
    return Api(resv_live, http)


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


def test_a_qkd_network_runs_inside_a_started_reservation_and_is_deleted_at_its_end(
        api: OwnApi, bi: Api, resv_live, unique: str) -> None:
    (pair,) = api.equipment(f"qkd-device-pair-{unique}", f"pair-{unique}")
    token = api.token("alice", f"a-{unique}", "e")
    later = api.reserve(token, day(10), 1, equipment=[pair["name"]])
    description = {"name": f"n-{unique[:6]}", "nodes": [{"name": "alice", "saes": ["a"]}, {"name": "bob", "saes": ["b"]}],
                   "links": [{"between": ["alice", "bob"], "length_km": 10}]}
    early = bi.call("POST", "/qkd-networks", token, json={**description, "reservation_id": later["id"]})
    assert early.status_code == 409 and "has not started" in early.json()["detail"]

    now = api.reserve(token, dt.datetime.now(dt.UTC), 8 / 3600, equipment=[pair["name"]])  # 8 s, from now
    network = bi.ok("POST", "/qkd-networks", token, 201, json={**description, "reservation_id": now["id"]})
    assert network["reservation_id"] == now["id"] and network["expires_at"] == now["ends_at"]
    assert api.ok("GET", f"/reservations/{now['id']}", token)["bound"] == [f"qkd network {description['name']}"]

    wait_for(lambda: bi.ok("GET", f"/qkd-networks/{network['id']}", token)["status"] == "deleted", 20,
             "the network deleted at the reservation's end")
    (end,) = [e for e in _events(resv_live.settings.database_url, "reservation.end", _uuid(now["id"]))]
    assert end[4]["released"] == [f"qkd network {description['name']}"]
    (deleted,) = _events(resv_live.settings.database_url, "qkd_network.delete", _uuid(network["id"]))
    assert deleted[1] == "system:reservations"


def _spec(flavor: str, image: str, name: str) -> dict[str, Any]:
    return {"friendly_name": name, "flavor_id": flavor, "disk_image_id": image}


def _body(flavor: str, image: str, name: str, reservation_id: str) -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "resources": [_spec(flavor, image, name)], "reservation_id": reservation_id}


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
    assert re.search(rf"(9|10)d \d+h in {booked['id'][-8:]}", listed), listed  # it expires at its end
    assert "waiting for reservation" in listed
    assert f"resource vm-{unique}" in cli("reservations")
