"""Reservations of microVM host capacity: shares add up against the hosts' vCPUs and memory."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from slices_blueprint.core.database import Database
from slices_blueprint.domains import wire
from slices_blueprint.hosts import service as host_service
from slices_blueprint.hosts.models import Host, HostBooking
from slices_blueprint.hosts.service import HeldCapacity
from tests.helpers import Api
from tests.reservations.conftest import OwnApi, add_host, day

H = dt.timedelta(hours=1)


@pytest.fixture(scope="module", autouse=True)
def hosts(resv_live) -> None:
    """Two hosts: 16 vCPUs and 32768 MiB in all (a draining host does not count)."""
    add_host(resv_live.settings.database_url, 8, 16384)
    add_host(resv_live.settings.database_url, 8, 16384)


def test_capacity_reservations_sum_up_to_the_hosts_capacity(api: OwnApi, unique: str) -> None:
    token = api.token("alice", f"a-{unique}", "e")
    t = day(30)
    api.reserve(token, t + H, 2, vcpus=10, ram_mib=8192)          # [1h, 3h): 10
    api.reserve(token, t + 2 * H, 2, vcpus=6, ram_mib=8192)       # [2h, 4h): 6, 16 in all at 2h-3h
    refused = api.call("POST", "/reservations", token,
                       json={"starts_at": (t + 2.5 * H).isoformat(), "hours": 0.25, "vcpus": 1})
    assert refused.status_code == 409
    assert refused.json()["conflicts"] == [
        "microVM hosts: 16 of 16 vCPUs and 16384 of 32768 MiB are reserved then, 1 vCPUs and 0 MiB asked"]
    assert dt.datetime.fromisoformat(refused.json()["alternatives"][0]["starts_at"]) == t + 3 * H
    api.reserve(token, t + 3 * H, 1, vcpus=10)                     # 6 + 10 at 3h-4h
    assert api.call("POST", "/reservations", token, json={
        "starts_at": (t + 3 * H).isoformat(), "hours": 1, "ram_mib": 16385 + 8192}).status_code == 409
    api.reserve(token, t + 3 * H, 1, ram_mib=16384 + 8192)        # memory: 8192 + 24576 = 32768
    never = api.call("POST", "/reservations", token, json={"hours": 1, "vcpus": 17})
    assert never.status_code == 422 and "16 vCPUs and 32768 MiB in all" in never.json()["detail"]


def test_capacity_availability(api: OwnApi, unique: str) -> None:
    token = api.token("alice", f"a-{unique}", "e")
    t = day(31, minutes=7)
    api.reserve(token, t, 3, vcpus=12)
    answer = api.ok("GET", "/reservations/availability", token,
                    params={"vcpus": 8, "hours": 1, "after": t.isoformat(), "limit": 1})
    assert answer["capacity"] == {"vcpus": 16, "ram_mib": 32768}
    assert [dt.datetime.fromisoformat(s["starts_at"]) for s in answer["slots"]] == [t + 3 * H]


def _microvm_catalog(bi: Api, admin: str, unique: str) -> tuple[str, str]:
    """A 3-vCPU microVM flavor and an image for it, added by an admin: their ids."""
    flavor = bi.ok("POST", "/flavors", admin, 201, json={
        "friendly_name": f"mv3-{unique}", "flavor_type": "microvm", "vcpus": 3, "ram_mib": 1024, "disk_mb": 1024})["id"]
    image = bi.ok("POST", "/disk-images", admin, 201, json={
        "friendly_name": f"alpine-{unique}", "flavor_type": "microvm", "location": f"https://127.0.0.1:1/{unique}.img",
        "default_username": "root", "min_ram_mib": 128})["id"]
    return flavor, image


def test_microvms_outside_reservations_keep_clear_of_the_capacity_held_now(api: OwnApi, resv_live,
                                                                            unique: str) -> None:
    bi = Api(resv_live, api.http)
    flavor, image = _microvm_catalog(bi, api.token("admin"), unique)
    alice, bob = api.token("alice", f"a-{unique}", "e"), api.token("bob", f"b-{unique}", "e")
    held = api.reserve(bob, dt.datetime.now(dt.UTC), 1, vcpus=12, ram_mib=8192)  # of 16 vCPUs, from now
    assert held["status"] == "active"
    bi.create(bob, ["inside"], flavor, image, reservation_id=held["id"])  # within its share: no more held

    bi.create(alice, ["fits"], flavor, image)  # 16 - 12 held = 4 vCPUs free outside: 3 fit
    refused = bi.call("POST", "/resources", alice, json={"request_id": str(uuid.uuid4()), "resources": [
        {"friendly_name": "over", "flavor_id": flavor, "disk_image_id": image}]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith(
        "the microVM hosts have 1 vCPUs and 23552 MiB free outside reservations now (12 vCPUs and 8192 MiB are "
        "held by 1 active reservation(s)); these microVMs need 3 vCPUs and 1024 MiB")
    assert [r["friendly_name"] for r in bi.ok("GET", "/resources", alice)] == ["fits"]

    api.ok("POST", f"/reservations/{held['id']}/cancel", bob, json={})  # its share is free again
    bi.create(alice, ["over"], flavor, image)
    assert sorted(r["friendly_name"] for r in bi.ok("GET", "/resources", alice)) == ["fits", "over"]


def test_placement_keeps_clear_of_a_reservation_that_started_after_the_request(api: OwnApi, resv_live,
                                                                                 unique: str) -> None:
    """A request accepted while nothing was held is checked again when placed: the hook
    ``domains.py`` wires tells ``hosts.place`` what the reservations active then hold beyond
    their VMs on a host (a VM of a reservation draws on its own share)."""
    bi = Api(resv_live, api.http)
    flavor, image = _microvm_catalog(bi, api.token("admin"), unique)
    alice, bob = api.token("alice", f"a-{unique}", "e"), api.token("bob", f"b-{unique}", "e")
    bi.create(alice, ["early"], flavor, image)  # accepted: nothing held yet
    held = api.reserve(bob, dt.datetime.now(dt.UTC), 1, vcpus=12, ram_mib=8192)  # then a reservation starts
    bi.create(bob, ["inside"], flavor, image, reservation_id=held["id"])
    (early,) = bi.ok("GET", "/resources", alice)
    (inside,) = bi.ok("GET", "/resources", bob)

    async def holds() -> list[HeldCapacity]:
        wire()
        db = Database(resv_live.settings.database_url, pool_size=1)
        try:
            async with db.session() as session:
                holder = host_service._capacity_holders["reservations"]
                seen = [await holder(session, early["id"]), await holder(session, inside["id"])]
                host_id = await session.scalar(select(Host.id).limit(1))
                session.add(HostBooking(vm_id=inside["id"], host_id=host_id, vcpus=3, memory_mib=1024))
                await session.flush()  # "inside" placed on a host: the host counts it now
                seen.append(await holder(session, early["id"]))
                await session.rollback()
            return seen
        finally:
            await db.dispose()

    try:
        assert asyncio.run(holds()) == [
            HeldCapacity(12, 8192, "1 active reservation(s)"),
            HeldCapacity(),  # its own reservation's share is for it
            HeldCapacity(9, 7168, "1 active reservation(s)")]
    finally:
        api.ok("POST", f"/reservations/{held['id']}/cancel", bob, json={})
