"""Issue 15, case 6: the data directory of a microVM host's agent fills up.

The agent's data directory is a small tmpfs this test mounts (and unmounts). Once the host's
heartbeat reports the disk full, placement sends it no create and says why. An agent whose
heartbeat is a moment behind refuses (507) with a reason saying so wherever the space runs
out: while the default image is built, half-way through copying a VM's disk, or at its very
first record; nothing half-written stays behind (no partial image or disk, no record, no
booking) and the VM already running is untouched. A stopped VM started on a full disk stays
stopped, whole, saying why. Once room is made, the same create and start succeed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import Site
from tests.faults.test_agent_faults import resources_by_name
from tests.helpers import wait_for
from tests.microvm.conftest import TestHost
from tests.microvm.test_agent_lifecycle import assert_nothing_left, ssh_banner

pytestmark = pytest.mark.microvm

TMPFS_MIB = 256
BOOT_S = 180


def mount_small_tmpfs(host: TestHost) -> None:
    host.data_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m,mode=0700", "tmpfs",
                    str(host.data_dir)], check=True)


def unmount(host: TestHost) -> None:
    """Stop the agent and its VMs first: nothing may hold the mount."""
    host.kill_agent()
    for pid in host.vmm_pids():
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["umount", str(host.data_dir)], check=True)


def fill(host: TestHost, leave_mib: int) -> Path:
    """A file that leaves ``leave_mib`` MiB free in the data directory."""
    filler = host.data_dir / "filler"
    filler.unlink(missing_ok=True)
    size = shutil.disk_usage(host.data_dir).free - leave_mib * 2**20
    subprocess.run(["fallocate", "-l", str(size), str(filler)], check=True)
    assert shutil.disk_usage(host.data_dir).free // 2**20 <= leave_mib
    return filler


def every_file(root: Path) -> set[str]:
    """Every file under ``root`` (folders are checked where they matter: ``vms/``)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def create(site: Site, token: str, name: str, flavor: str, image: str) -> dict:
    task = site.api.ok("POST", "/resources", token, 202, json={
        "request_id": str(uuid.uuid4()),
        "resources": [{"friendly_name": name, "flavor_id": flavor, "disk_image_id": image}]})
    return site.api.wait_task(token, task["id"], BOOT_S)


def assert_refused_at_placement(site: Site, token: str, name: str, flavor: str, image: str,
                                files_before: set[str]) -> str:
    """The create fails saying no host has room on its disk; the agent never hears of it."""
    done = create(site, token, name, flavor, image)
    assert done["status"] == "failed", done
    resource = resources_by_name(site, token)[name]
    reason = resource["status_reason"]
    assert resource["status"] == "error", resource
    assert reason.startswith(f"no microVM host has disk for VM {resource['id']}: it needs 128 MiB free"), reason
    assert f"too little: {site.host.ns} (" in reason, reason
    data = site.host.data_dir
    assert every_file(data) == files_before, every_file(data) ^ files_before
    with site.host.client() as agent:
        assert resource["id"] not in [vm["id"] for vm in agent.get("/v1/vms").json()]
    assert site.host_row()["resources"] == [r["id"] for r in resources_by_name(site, token).values()
                                            if r["status"] in ("running", "stopped")]
    return reason


def wait_reported(site: Site, ok: Callable[[int], bool], what: str) -> None:
    """Wait until the host's heartbeat reports a free disk that ``ok`` accepts."""
    wait_for(lambda: ok(site.host_row()["disk_free_mib"]), 10,
             lambda: f"the heartbeat reporting {what}: {site.host_row()['disk_free_mib']} MiB free")


def assert_agent_refuses(host: TestHost, vm_id: str, files_before: set[str]) -> str:
    """A create sent to the agent itself (its last heartbeat a moment behind the disk)
    answers 507 saying the data directory is full, and leaves no file."""
    with host.client() as agent:
        answer = agent.post("/v1/vms", json={"id": vm_id, "vcpus": 1, "memory_mib": 160, "disk_mib": 64})
        assert answer.status_code == 507, answer.text
        assert vm_id not in [vm["id"] for vm in agent.get("/v1/vms").json()]
    reason = answer.json()["detail"]
    assert f"no space left for VM {vm_id}" in reason, reason
    assert f"data directory {host.data_dir}" in reason, reason
    assert every_file(host.data_dir) == files_before, every_file(host.data_dir) ^ files_before
    return reason


def test_full_data_directory_refuses_creates_and_spares_running_vms(make_site, tmp_path: Path) -> None:
    site: Site = make_site(prepare=mount_small_tmpfs)
    host, api = site.host, site.api
    try:
        flavor, image = site.catalog()
        token = api.token("alice", "demo", f"diskfull-{uuid.uuid4().hex[:6]}")
        cache = host.data_dir / "cache"

        # 1. no room for the default image (built on the first create): placement sends no
        # create once the heartbeat says so; the agent itself leaves no partial image
        before = every_file(host.data_dir)
        filler = fill(host, leave_mib=30)
        wait_reported(site, lambda free: free <= 30, "the full disk")
        placement_reason = assert_refused_at_placement(site, token, "mv-noimage", flavor, image,
                                                       before | {"filler"})
        reason = assert_agent_refuses(host, "direct-noimage", before | {"filler"})
        assert not list(cache.glob("default/*")), "a partial default image was left"

        # 2. room made: a VM boots
        filler.unlink()
        wait_reported(site, lambda free: free >= 128, "the room made")
        first = create(site, token, "mv-1", flavor, image)
        assert first["status"] == "succeeded", first
        vm1 = resources_by_name(site, token)["mv-1"]
        (vm1_pid,) = host.vmm_pids()
        vm1_files = {p: p.stat().st_size for p in (host.data_dir / "vms" / vm1["id"]).iterdir()
                     if p.name not in ("console.log",)}

        # 3. the space runs out half-way through the next VM's disk copy, 4. at its first byte
        for name, leave in (("direct-half", 20), ("direct-none", 0)):
            before = every_file(host.data_dir)
            filler = fill(host, leave_mib=leave)
            reason = assert_agent_refuses(host, name, before | {"filler"})
            filler.unlink()

        # the running VM was untouched all along
        assert host.vmm_pids() == {vm1_pid: vm1["id"]}
        assert {p: p.stat().st_size for p in vm1_files} == vm1_files
        assert (ssh_banner(host.address, vm1["access"]["ssh_port"]) or "").startswith("SSH-2.0")
        with host.client() as agent:
            assert agent.get(f"/v1/vms/{vm1['id']}").json()["state"] == "running"

        # 5. a stopped VM started on a full disk stays stopped, its disk whole, saying why
        stopped = api.wait_task(token, api.ok("POST", f"/resources/{vm1['id']}/stop", token, 202)["id"])
        assert stopped["status"] == "succeeded", stopped
        console_log = host.data_dir / "vms" / vm1["id"] / "console.log"
        console_log.write_bytes(b"")  # a start resets it: emptied now, that frees no room
        vm1_stopped = {p: p.stat().st_size for p in vm1_files}
        before = every_file(host.data_dir)
        filler = fill(host, leave_mib=0)
        start = api.wait_task(token, api.ok("POST", f"/resources/{vm1['id']}/start", token, 202)["id"], BOOT_S)
        assert start["status"] == "failed", start
        start_reason = resources_by_name(site, token)["mv-1"]["status_reason"]
        assert f"no space left for VM {vm1['id']} to start in the agent's data directory" in start_reason, \
            start_reason
        assert f"data directory {host.data_dir}" in start_reason, start_reason
        assert host.vmm_pids() == {} and host.taps() == []
        with host.client() as agent:
            assert agent.get(f"/v1/vms/{vm1['id']}").json()["state"] == "stopped"
        assert every_file(host.data_dir) == before | {"filler"}, every_file(host.data_dir) ^ before
        assert {p: p.stat().st_size for p in vm1_files} == vm1_stopped  # nothing half-written
        filler.unlink()
        site.reconcile()  # the resource follows its VM: stopped, ready to start again
        assert resources_by_name(site, token)["mv-1"]["status"] == "stopped"
        start = api.wait_task(token, api.ok("POST", f"/resources/{vm1['id']}/start", token, 202)["id"], BOOT_S)
        assert start["status"] == "succeeded", start
        assert resources_by_name(site, token)["mv-1"]["status"] == "running"

        # 6. room made again: the same request succeeds
        clock = time.monotonic()
        again = create(site, token, "mv-2", flavor, image)
        assert again["status"] == "succeeded", again
        recovered = time.monotonic() - clock
        by_name = resources_by_name(site, token)
        assert {n: r["status"] for n, r in by_name.items()} == {
            "mv-noimage": "error", "mv-1": "running", "mv-2": "running"}
        for name in ("mv-1", "mv-2"):
            done = api.wait_task(token, api.ok("DELETE", f"/resources/{by_name[name]['id']}", token,
                                               202)["id"])
            assert done["status"] == "succeeded", done
        for name in ("mv-1", "mv-2"):
            access = by_name[name]["access"]
            assert_nothing_left(host, by_name[name]["id"], access["ipv4"], access["ssh_port"])
        assert site.reconcile()["orphans"] == 0
        print(f"\nFAULTS case 6: placement refused with: {placement_reason}\n  the agent refused "
              f"with: {reason}\n  a start refused with: {start_reason}\n  a create after room "
              f"was made: {recovered:.1f} s")
    finally:
        unmount(host)
