"""The Firecracker backend against FirecrackerAPIContractDouble (``firecracker_double.py``),
a stand-in serving Firecracker's documented API, and JailerContractDouble
(``jailer_double.py``), a stand-in for its jailer: no Firecracker or jailer binary exists
here, so these tests prove the calls, their order and bodies, the jailer's arguments and
the chroot match the documented contracts, not that a guest boots under Firecracker or
that the real jailer isolates it (the vmlinux itself is booted under QEMU in
``test_images.py``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slices_blueprint.agent.console import ConsoleLog, record
from slices_blueprint.agent.network import tap_name
from slices_blueprint.agent.vmm.base import (
    LaunchPlan,
    TapNet,
    UserNet,
    VMMError,
    control_socket,
    kill_process,
    process_alive,
    remove_control_sockets,
    vmm_processes,
)
from slices_blueprint.agent.vmm.firecracker import FirecrackerVMM, instance_id
from slices_blueprint.agent.waiting import wait_until
from tests.microvm.conftest import require_microvm_host

DOUBLE = Path(__file__).with_name("firecracker_double.py")
JAILER_DOUBLE = Path(__file__).with_name("jailer_double.py")
UID, GID = 4242, 4343  # the jail's user: no account needed


def wrapper(path: Path, *python_args: str) -> str:
    """An executable ``path`` that runs this Python with ``python_args`` and its arguments."""
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {shlex.join(python_args)} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def binary(tmp_path: Path) -> str:
    return wrapper(tmp_path / "firecracker", str(DOUBLE))


@pytest.fixture
def plan(tmp_path: Path) -> Iterator[LaunchPlan]:
    vm_dir = tmp_path / "vms" / "fc1"
    vm_dir.mkdir(parents=True)
    for name in ("vmlinux", "initrd.img", "rootfs.img", "seed.img"):
        (vm_dir / name).write_bytes(b"\0")
    yield LaunchPlan(vm_id="fc1", vm_dir=vm_dir, kernel=vm_dir / "vmlinux",
                      initrd=vm_dir / "initrd.img", cmdline="console=ttyS0",
                      rootfs=vm_dir / "rootfs.img", seed=vm_dir / "seed.img", vcpus=2,
                      memory_mib=256, net=TapNet(tap="sbtabc", mac="52:54:00:00:00:01"))
    remove_control_sockets(vm_dir)


def calls_in(vm_dir: Path) -> list[dict]:
    """The API calls the Firecracker double accepted, in order."""
    return [json.loads(line) for line in (vm_dir / "firecracker.log").read_text().splitlines()]


def calls(plan: LaunchPlan) -> list[dict]:
    return calls_in(plan.vm_dir)


async def test_firecracker_contract_launch_configures_then_starts(binary, plan) -> None:
    launched = await FirecrackerVMM(binary).launch(plan)
    pid = launched.pid
    try:
        assert process_alive(pid, plan.vm_dir)
        made = calls(plan)
        assert [(c["method"], c["path"]) for c in made] == [
            ("PUT", "/machine-config"), ("PUT", "/boot-source"), ("PUT", "/drives/rootfs"),
            ("PUT", "/drives/seed"), ("PUT", "/network-interfaces/eth0"), ("PUT", "/actions"),
        ]
        assert made[0]["body"] == {"vcpu_count": 2, "mem_size_mib": 256, "smt": False}
        assert made[1]["body"] == {"kernel_image_path": str(plan.kernel), "boot_args": "console=ttyS0",
                                   "initrd_path": str(plan.initrd)}
        assert made[3]["body"] == {"drive_id": "seed", "path_on_host": str(plan.seed),
                                   "is_root_device": False, "is_read_only": True}
        assert made[4]["body"] == {"iface_id": "eth0", "host_dev_name": "sbtabc",
                                   "guest_mac": "52:54:00:00:00:01"}
        assert made[5]["body"] == {"action_type": "InstanceStart"}
        # the console is a FIFO the agent's recorder copies into the capped console.log
        console = ConsoleLog(plan.vm_dir, 1024 * 1024)
        recorder = asyncio.create_task(record("fc1", launched.console, console))
        await wait_until(console.ready, 5, "guest ready marker")
        assert "slices-guest-ready" in console.tail(5)
    finally:
        await kill_process(pid, plan.vm_dir)
    await asyncio.wait_for(recorder, 5)  # the VMM's end closes the FIFO: the recorder ends
    assert not process_alive(pid, plan.vm_dir)


async def test_firecracker_contract_pause_and_resume_patch_vm(binary, plan) -> None:
    vmm = FirecrackerVMM(binary)
    pid = (await vmm.launch(plan)).pid
    try:
        await vmm.pause(plan.vm_dir)
        await vmm.resume(plan.vm_dir)
        assert [c["body"] for c in calls(plan)[-2:]] == [{"state": "Paused"}, {"state": "Resumed"}]
    finally:
        await kill_process(pid, plan.vm_dir)


async def test_firecracker_contract_fault_becomes_error_and_process_is_killed(
    binary, plan
) -> None:
    os.unlink(plan.kernel)
    with pytest.raises(VMMError, match=r"PUT /boot-source: 400 Invalid file path"):
        await FirecrackerVMM(binary).launch(plan)
    assert vmm_processes(plan.vm_dir.parent) == {}


async def test_firecracker_contract_needs_a_tap(binary, plan) -> None:
    user = LaunchPlan(**{**plan.__dict__, "net": UserNet(mac="52:54:00:00:00:02",
                                                          bind="127.0.0.1", host_port=22999)})
    with pytest.raises(VMMError, match="needs bridge networking"):
        await FirecrackerVMM(binary).launch(user)


def test_firecracker_contract_instance_ids_are_valid_and_unique(tmp_path: Path) -> None:
    dirs = [tmp_path / "vm_1.a", tmp_path / "vm-1-a", tmp_path / ("v" * 80), tmp_path / "x" / "vm-1-a"]
    ids = [instance_id(d) for d in dirs]
    assert all(re.fullmatch(r"[A-Za-z0-9-]{1,64}", i) for i in ids), ids
    assert len(set(ids)) == len(ids) and ids[0].startswith("vm-1-a-")
    assert instance_id(dirs[0]) == ids[0]


@pytest.mark.microvm
def test_jailer_contract_double_keeps_the_documented_contract(tmp_path: Path) -> None:
    """The double itself: what the jailer refuses, the chroot it builds, what it execs."""
    require_microvm_host()
    probe = wrapper(tmp_path / "firecracker", "-c",
                    "import json, os, sys; print(json.dumps([sys.argv[1:], dict(os.environ)]))")
    base = tmp_path / "jail"
    base.mkdir()
    jailer = wrapper(tmp_path / "jailer", str(JAILER_DOUBLE))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([jailer, *args], capture_output=True, text=True, timeout=60,
                              check=False, env={**os.environ, "NOT_FOR_THE_JAIL": "1"})

    good = ["--id", "vm-1", "--exec-file", probe, "--uid", "4242", "--gid", "4343",
            "--chroot-base-dir", str(base), "--cgroup-version", "2"]
    for bad, error in ((good[:6], "--gid"), (["--id", "vm_1", *good[2:]], "Invalid instance ID"),
                       (["--id", "v" * 65, *good[2:]], "Invalid instance ID"),
                       ([*good[:3], str(tmp_path / "nope"), *good[4:]], "is not a file")):
        done = run(*bad)
        assert done.returncode != 0 and error in done.stderr, (bad, done.stderr)

    done = run(*good, "--", "--api-sock", "/run/firecracker.socket")
    assert done.returncode == 0, done.stderr
    root = base / "firecracker" / "vm-1" / "root"
    argv, env = json.loads(done.stdout)
    assert argv[:3] == ["--id", "vm-1", "--start-time-us"]
    assert argv[-2:] == ["--api-sock", "/run/firecracker.socket"]
    assert env["JAILER_DOUBLE_ROOT"] == str(root) and "NOT_FOR_THE_JAIL" not in env
    assert (env["JAILER_DOUBLE_UID"], env["JAILER_DOUBLE_GID"]) == ("4242", "4343")
    assert (root / "firecracker").read_bytes() == Path(probe).read_bytes()
    assert stat.S_ISCHR((root / "dev/net/tun").stat().st_mode)
    run_dir = (root / "run").stat()
    assert (run_dir.st_uid, run_dir.st_gid, stat.S_IMODE(run_dir.st_mode)) == (4242, 4343, 0o700)
    again = run(*good)
    assert again.returncode != 0 and "File exists" in again.stderr, "a used chroot was reused"


@pytest.mark.microvm
def test_firecracker_contract_jailed_vm_through_the_agent(make_host, tmp_path: Path) -> None:
    """An agent with the jailer configured (both doubles): the files in the chroot, their
    owners, chroot-relative API paths, pause/resume, re-adoption, stop/start, delete."""
    host = make_host.prepare()
    settings = {"vmm": "firecracker", "firecracker_binary": wrapper(tmp_path / "firecracker",
                                                                    str(DOUBLE)),
                "jailer_binary": wrapper(tmp_path / "jailer", str(JAILER_DOUBLE)),
                "jailer_uid": str(UID), "jailer_gid": str(GID),
                "jailer_netns": f"/run/netns/{host.ns}"}
    host.start_agent(**settings)
    vm_dir = host.data_dir / "vms" / "vm_jail.1"
    root = vm_dir / "jail" / "firecracker" / instance_id(vm_dir) / "root"
    with host.client() as api:
        vm = api.post("/v1/vms", json={"id": "vm_jail.1", "memory_mib": 128, "disk_mib": 32},
                      params={"wait_ready": 30}).json()
        assert vm["state"] == "running" and vm["guest_ready"], vm
        (pid,) = [p for p, v in host.vmm_pids().items() if v == "vm_jail.1"]
        assert f"--id {instance_id(vm_dir)} " in Path(f"/proc/{pid}/cmdline").read_text().replace(
            "\0", " "), "the jailer did not exec Firecracker in its own process"

        for name in ("rootfs.img", "seed.img"):  # the VM's own files: linked, given to uid:gid
            st = (root / name).stat()
            assert (root / name).samefile(vm_dir / name) and (st.st_uid, st.st_gid) == (UID, GID)
        (vmlinux,) = (host.data_dir / "cache" / "default").glob("*/vmlinux")
        assert (root / "vmlinux").samefile(vmlinux), "the default image's vmlinux is not booted"
        boot = (root / "vmlinux").stat()  # shared boot files: readable, not the jail's to write
        assert boot.st_uid == 0 and stat.S_IMODE(boot.st_mode) & 0o022 == 0
        assert (root / "initrd.img").is_file()
        made = {c["path"]: c["body"] for c in calls_in(vm_dir)}
        assert made["/boot-source"]["kernel_image_path"] == "/vmlinux"
        assert made["/boot-source"]["initrd_path"] == "/initrd.img"
        assert made["/drives/rootfs"]["path_on_host"] == "/rootfs.img"
        assert made["/drives/seed"]["path_on_host"] == "/seed.img"
        tap = tap_name("vm_jail.1")
        assert host.exec("cat", f"/sys/class/net/{tap}/owner").strip() == str(UID)
        sock = control_socket(vm_dir, "api")
        assert sock.resolve() == root / "run" / "firecracker.socket" and sock.is_socket()

        assert api.post("/v1/vms/vm_jail.1/pause").json()["state"] == "paused"
        assert api.post("/v1/vms/vm_jail.1/resume").json()["state"] == "running"
        host.kill_agent()
        host.start_agent(**settings)
        assert api.get("/v1/vms/vm_jail.1").json()["state"] == "running"
        assert host.vmm_pids().get(pid) == "vm_jail.1", "the jailed VM was not re-adopted"
        assert api.post("/v1/vms/vm_jail.1/pause").json()["state"] == "paused"
        assert [c["body"] for c in calls_in(vm_dir)[-3:]] == [
            {"state": "Paused"}, {"state": "Resumed"}, {"state": "Paused"}]

        assert api.post("/v1/vms/vm_jail.1/stop").json()["state"] == "stopped"
        assert "vm_jail.1" not in host.vmm_pids().values()
        assert not (vm_dir / "jail").exists() and not sock.is_symlink()
        assert api.post("/v1/vms/vm_jail.1/start").json()["state"] == "running"  # a new jail
        assert (root / "run" / "firecracker.socket").is_socket()
        assert api.delete("/v1/vms/vm_jail.1").status_code == 204
    assert host.vmm_pids() == {} and not vm_dir.exists()
    assert not sock.is_symlink() and not list(sock.parent.glob(sock.stem + ".*"))
