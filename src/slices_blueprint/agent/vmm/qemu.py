"""QEMU ``-M microvm`` backend (works under TCG, i.e. without KVM).

QEMU daemonizes after it has opened every device, so ``launch`` returns once the VM is
really starting; it is then a child of init, not of the agent, and survives agent restarts.
Its stdio never holds a pipe of the agent's (a daemon holding one would block the wait).
Pause/resume are QMP ``stop``/``cont``; block counters come from ``query-blockstats``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from slices_blueprint.agent.vmm.base import VMM, LaunchPlan, TapNet, VMMError, control_socket
from slices_blueprint.agent.vmm.qmp import qmp

log = structlog.get_logger(__name__)

LAUNCH_TIMEOUT = 30.0  # seconds until QEMU has opened every device and daemonized


def host_tsc_khz() -> int:
    """The host's TSC frequency in kHz, from /proc/cpuinfo (TCG guests need it given)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return 2_000_000


class QemuMicroVM(VMM):
    name = "qemu"

    def __init__(self, binary: str, accel: str, tsc_khz: int | None) -> None:
        self.binary = binary
        self.accel = accel
        self.tsc_khz = tsc_khz or host_tsc_khz()

    def argv(self, plan: LaunchPlan) -> list[str]:
        d = plan.vm_dir
        cmdline = f"{plan.cmdline} tsc_early_khz={self.tsc_khz}"
        argv = [
            self.binary, "-name", f"slices-{plan.vm_id}",
            "-M", "microvm,x-option-roms=off,rtc=on", "-accel", self.accel,
            "-m", str(plan.memory_mib), "-smp", str(plan.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", f"file:{plan.console_log}",
            "-kernel", str(plan.kernel), "-append", cmdline,
            "-drive", f"id=root,file={plan.rootfs},format=raw,if=none",
            "-device", "virtio-blk-device,drive=root",
            "-drive", f"id=seed,file={plan.seed},format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=seed",
            "-qmp", f"unix:{control_socket(d, 'qmp')},server=on,wait=off",
            "-pidfile", str(d / "vmm.pid"), "-daemonize",
        ]
        if plan.initrd:
            argv += ["-initrd", str(plan.initrd)]
        if isinstance(plan.net, TapNet):
            argv += ["-netdev", f"tap,id=net0,ifname={plan.net.tap},script=no,downscript=no"]
        else:
            fwd = f"tcp:{plan.net.bind}:{plan.net.host_port}-:22"
            argv += ["-netdev", f"user,id=net0,net=10.0.2.0/24,hostfwd={fwd}"]
        argv += ["-device", f"virtio-net-device,netdev=net0,mac={plan.net.mac}"]
        return argv

    async def launch(self, plan: LaunchPlan) -> int:
        pidfile = plan.vm_dir / "vmm.pid"
        pidfile.unlink(missing_ok=True)
        control_socket(plan.vm_dir, "qmp").unlink(missing_ok=True)
        log_path = plan.vm_dir / "vmm.log"
        with log_path.open("wb") as errors:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(plan), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=errors,
            )
        try:
            code = await asyncio.wait_for(proc.wait(), LAUNCH_TIMEOUT)
        except TimeoutError as exc:
            raise VMMError(f"QEMU did not daemonize within {LAUNCH_TIMEOUT} s") from exc
        if code != 0:
            raise VMMError(f"QEMU failed: {log_path.read_text(errors='replace').strip()}")
        try:
            pid = int(pidfile.read_text().strip())
        except (FileNotFoundError, ValueError) as exc:
            raise VMMError("QEMU daemonized without writing its pid file") from exc
        log.info("agent.qemu_started", vm_id=plan.vm_id, pid=pid)
        return pid

    async def pause(self, vm_dir: Path) -> None:
        await qmp(control_socket(vm_dir, "qmp"), "stop")

    async def resume(self, vm_dir: Path) -> None:
        await qmp(control_socket(vm_dir, "qmp"), "cont")

    async def block_stats(self, vm_dir: Path) -> dict[str, dict[str, int]]:
        devices = await qmp(control_socket(vm_dir, "qmp"), "query-blockstats")
        keys = ("rd_bytes", "wr_bytes", "rd_operations", "wr_operations")
        return {
            dev.get("device") or dev.get("qdev", "?"): {k: int(dev["stats"].get(k, 0)) for k in keys}
            for dev in devices
        }
