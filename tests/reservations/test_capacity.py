"""Reservations of microVM host capacity: shares add up against the hosts' vCPUs and memory."""

from __future__ import annotations

import datetime as dt

import pytest

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
