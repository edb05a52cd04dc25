"""The Firecracker backend against FirecrackerAPIContractDouble (``firecracker_double.py``),
a stand-in serving Firecracker's documented API: no Firecracker binary exists here, so these
tests prove the calls and their order and bodies match the documented contract, not that a
guest boots under Firecracker."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slices_blueprint.agent.vmm.base import (
    LaunchPlan,
    TapNet,
    UserNet,
    VMMError,
    kill_process,
    process_alive,
    remove_control_sockets,
    vmm_processes,
)
from slices_blueprint.agent.vmm.firecracker import FirecrackerVMM

DOUBLE = Path(__file__).with_name("firecracker_double.py")


@pytest.fixture
def binary(tmp_path: Path) -> str:
    script = tmp_path / "firecracker"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {DOUBLE} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


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


def calls(plan: LaunchPlan) -> list[dict]:
    return [json.loads(line) for line in (plan.vm_dir / "firecracker.log").read_text().splitlines()]


async def test_firecracker_contract_launch_configures_then_starts(binary, plan) -> None:
    pid = await FirecrackerVMM(binary).launch(plan)
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
        assert "slices-guest-ready" in plan.console_log.read_text()
    finally:
        await kill_process(pid, plan.vm_dir)
    assert not process_alive(pid, plan.vm_dir)


async def test_firecracker_contract_pause_and_resume_patch_vm(binary, plan) -> None:
    vmm = FirecrackerVMM(binary)
    pid = await vmm.launch(plan)
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
