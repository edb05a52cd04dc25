"""Issue 15, case 3: a microVM host agent dies, and its host reboots.

The agent is SIGKILLed with a VM running: the guest keeps running (same boot, SSH answers),
the service marks the host lost, a create placed on it meanwhile is retried and then waits
for the host; the agent comes back, the host is live again, the agent re-adopts its VM (same
process) and the waiting create completes. Then the host "reboots" (the agent and every VMM
process killed, its bridge, TAPs and NAT rules gone, the agent started again): the service
shows the VMs stopped with the reason, and a start brings a VM back on the disk that survived.
And the agent killed in the middle of a create (two hosts): the create is retried on its
host and the VM is made once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import HOST_LOST_AFTER_S, Site
from tests.helpers import wait_for
from tests.microvm.conftest import TestHost
from tests.microvm.guest_tools import SSHKey
from tests.microvm.test_agent_lifecycle import assert_nothing_left, ssh_banner

pytestmark = pytest.mark.microvm

BOOT_S = 180


def create(site: Site, token: str, name: str, flavor: str, image: str, key: SSHKey) -> str:
    """Ask for one microVM that ``key`` can log into; answer its task's id."""
    body = {"request_id": str(uuid.uuid4()), "resources": [{
        "friendly_name": name, "flavor_id": flavor, "disk_image_id": image,
        "ssh_authorized_keys": [key.public]}]}
    return site.api.ok("POST", "/resources", token, 202, json=body)["id"]


def resources_by_name(site: Site, token: str) -> dict[str, dict]:
    return {r["friendly_name"]: r for r in site.api.ok("GET", "/resources", token)}


def subtask(site: Site, token: str, task_id: str) -> dict:
    return site.api.ok("GET", f"/tasks/{task_id}", token)["subtasks"][0]


def guest(key: SSHKey, host: TestHost, resource: dict, command: str) -> str:
    return key.run(host.address, resource["access"]["ssh_port"], command, timeout=60).strip()


def test_agent_killed_then_host_rebooted(microvm_site: Site, tmp_path: Path) -> None:
    site, host, api = microvm_site, microvm_site.host, microvm_site.api
    key = SSHKey(tmp_path)
    flavor, image = site.catalog()
    token = api.token("alice", "demo", f"faults-{uuid.uuid4().hex[:6]}")
    done = api.wait_task(token, create(site, token, "mv-a", flavor, image, key), BOOT_S)
    assert done["status"] == "succeeded", done
    a = resources_by_name(site, token)["mv-a"]
    boot_id = guest(key, host, a, "cat /proc/sys/kernel/random/boot_id")
    (vmm_pid,) = host.vmm_pids()

    # -- the agent dies (SIGKILL) with mv-a running -----------------------------------------
    killed = time.monotonic()
    host.kill_agent()
    # a create placed on the host before it is known lost: the calls fail, it is retried
    b_task = create(site, token, "mv-b", flavor, image, key)
    assert (ssh_banner(host.address, a["access"]["ssh_port"]) or "").startswith("SSH-2.0"), \
        "the guest stopped answering when its agent died"
    site.wait_host("lost", 15 + 2 * HOST_LOST_AFTER_S)  # the lost-host job runs every 15 s
    lost_after = time.monotonic() - killed
    waiting = wait_for(lambda: (t := subtask(site, token, b_task)) and  # between two tries
                       f"waiting for {host.ns}" in (t["message"] or "") and t, 30,
                       "the create waiting for the host")
    assert waiting["status"] == "running", waiting
    # the user's view meanwhile: the VM's host is lost, said as its reason
    site.reconcile()
    a_lost = resources_by_name(site, token)["mv-a"]
    assert a_lost["status"] == "error", a_lost
    assert f"microVM host {host.ns} is lost" in a_lost["status_reason"], a_lost
    assert guest(key, host, a, "cat /proc/sys/kernel/random/boot_id") == boot_id

    # -- the agent comes back ---------------------------------------------------------------
    restarted = time.monotonic()
    site.restart_agent()
    site.wait_host("active", 30)
    host_back = time.monotonic() - restarted
    assert host.vmm_pids() == {vmm_pid: a["id"]}, "the running VM was not re-adopted"
    assert guest(key, host, a, "cat /proc/sys/kernel/random/boot_id") == boot_id, \
        "the guest rebooted: it should have kept running"
    site.reconcile()
    assert resources_by_name(site, token)["mv-a"]["status"] == "running"
    b_done = api.wait_task(token, b_task, BOOT_S)
    assert b_done["status"] == "succeeded", b_done
    create_recovered = time.monotonic() - restarted
    by_name = resources_by_name(site, token)
    assert {n: r["status"] for n, r in by_name.items()} == {"mv-a": "running", "mv-b": "running"}
    with host.client() as agent:  # one VM per resource: none lost, none made twice
        assert sorted(vm["id"] for vm in agent.get("/v1/vms").json()) == sorted(
            r["id"] for r in by_name.values())
    assert sorted(host.vmm_pids().values()) == sorted(r["id"] for r in by_name.values())
    b = by_name["mv-b"]

    # -- the host reboots: the agent and every VMM process die, its network state is gone --
    marker = uuid.uuid4().hex
    guest(key, host, a, f"echo {marker} > /root/marker && sync")
    host.kill_agent()
    for pid in host.vmm_pids():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not host.vmm_pids(), 10, "the VMM processes dying")
    for tap in host.taps():
        host.exec("ip", "link", "del", tap)
    host.exec("ip", "link", "del", "slicesbr0")
    host.exec("nft", "flush", "ruleset")
    rebooted = time.monotonic()
    site.restart_agent()
    site.wait_host("active", 30)
    assert site.reconcile()["orphans"] == 0
    after = resources_by_name(site, token)
    for name in ("mv-a", "mv-b"):
        assert after[name]["status"] == "stopped", after[name]
        assert "VMM process was gone" in after[name]["status_reason"], after[name]
    started = api.wait_task(token, api.ok("POST", f"/resources/{a['id']}/start", token, 202)["id"],
                            BOOT_S)
    assert started["status"] == "succeeded", started
    a_back = resources_by_name(site, token)["mv-a"]
    assert a_back["status"] == "running" and a_back["access"] == a["access"], a_back
    assert guest(key, host, a_back, "cat /root/marker") == marker, "the disk did not survive"
    assert guest(key, host, a_back, "cat /proc/sys/kernel/random/boot_id") != boot_id
    reboot_recovered = time.monotonic() - rebooted

    for resource in (a, b):
        deleted = api.wait_task(token, api.ok("DELETE", f"/resources/{resource['id']}", token, 202)["id"], 60)
        assert deleted["status"] == "succeeded", deleted
    for resource in (a, b):
        assert_nothing_left(host, resource["id"], resource["access"]["ipv4"],
                            resource["access"]["ssh_port"])
    assert site.reconcile()["orphans"] == 0
    print(f"\nFAULTS case 3: lost after {lost_after:.1f} s; host active {host_back:.1f} s after "
          f"the agent restarted; the create placed meanwhile done {create_recovered:.1f} s after; "
          f"after the reboot mv-a running on its disk {reboot_recovered:.1f} s after the restart")


def agent_state(host: TestHost, vm_id: str) -> str | None:
    """The VM's state as ``host``'s agent records it (None: unknown there, or no agent)."""
    try:
        with host.client() as agent:
            answer = agent.get(f"/v1/vms/{vm_id}", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.json()["state"] if answer.status_code == 200 else None


@pytest.mark.parametrize("kill_when", ["creating", "running"])
def test_agent_killed_mid_create_makes_the_vm_once(make_site, tmp_path: Path, kill_when: str) -> None:
    """The agent dies while a create is under way (its disk being made, or its guest
    booting) and comes straight back: the create is retried on that host (not placed on the
    other one, which would make the VM twice) and ends running, one VM in all."""
    site: Site = make_site(hosts=2)
    api, key = site.api, SSHKey(tmp_path)
    flavor, image = site.catalog()
    token = api.token("alice", "demo", f"midcreate-{uuid.uuid4().hex[:6]}")
    task = create(site, token, "mv-c", flavor, image, key)
    rid = resources_by_name(site, token)["mv-c"]["id"]
    first = wait_for(lambda: next((h for h in site.hosts if agent_state(h, rid) == kill_when), None),
                     60, f"the VM {kill_when} on a host", interval=0.05)
    first.kill_agent()
    clock = time.monotonic()
    site.restart_agent(first)
    done = api.wait_task(token, task, BOOT_S)
    assert done["status"] == "succeeded", done
    recovered = time.monotonic() - clock
    resource = resources_by_name(site, token)["mv-c"]
    assert resource["status"] == "running"
    (other,) = [h for h in site.hosts if h is not first]
    assert list(first.vmm_pids().values()) == [rid]
    assert other.vmm_pids() == {}, "the VM was made on the other host too"
    with other.client() as agent:
        assert agent.get("/v1/vms").json() == []
    assert site.reconcile()["orphans"] == 0
    assert guest(key, first, resource, "echo ok") == "ok"
    deleted = api.wait_task(token, api.ok("DELETE", f"/resources/{rid}", token, 202)["id"], 60)
    assert deleted["status"] == "succeeded", deleted
    assert_nothing_left(first, rid, resource["access"]["ipv4"], resource["access"]["ssh_port"])
    print(f"\nFAULTS case 3 (agent killed while {kill_when}): running {recovered:.1f} s after "
          "the agent restarted")
