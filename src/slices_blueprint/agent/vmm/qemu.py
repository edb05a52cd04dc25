"""QEMU ``-M microvm`` backend (works under TCG, i.e. without KVM).

QEMU runs in its own session (not ``-daemonize``: its fork and ``setsid`` are what the
sandbox forbids), so it survives agent restarts; its stdio never holds a pipe of the agent's.
``launch`` returns once QEMU answers QMP, i.e. has opened every device, and the guest runs.
Pause/resume are QMP ``stop``/``cont``; block counters come from ``query-blockstats``.

Hardening: QEMU runs under its seccomp filter (``-sandbox``: no fork/exec, no obsolete or
resource-control calls) and, when the agent is root, drops to ``vm_user`` (``-runas``) once it
has opened every file, the TAP and its sockets, so the VM's files stay root's (0600). Then
``elevateprivileges`` must stay allowed: QEMU's own setuid runs after the filter is loaded;
with every uid unprivileged and no capabilities there is nothing left to elevate to.
User-mode networking is ``restrict=on``: the guest reaches nothing on or beyond the host
(not even slirp's DNS) but explicit ``guestfwd`` services; the SSH ``hostfwd`` still works.
The serial console is a Unix socket the agent reads (``console.py``); QEMU starts paused
(``-S``) and runs once the agent is attached, so not a byte of the boot is lost.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
from pathlib import Path

import structlog

from slices_blueprint.agent.vmm.base import (
    VMM,
    Launched,
    LaunchPlan,
    TapNet,
    UserNet,
    VMMError,
    control_socket,
    kill_process,
    run,
)
from slices_blueprint.agent.vmm.qmp import qmp
from slices_blueprint.agent.waiting import wait_until

log = structlog.get_logger(__name__)

LAUNCH_TIMEOUT = 30.0  # seconds until QEMU has opened every device and answers QMP
SANDBOX = "on,obsolete=deny,spawn=deny,resourcecontrol=deny"


def user_netdev(net: UserNet) -> str:
    """The ``-netdev user`` value: restricted, the SSH forward, and any explicit guestfwd."""
    parts = ["user", "id=net0", "net=10.0.2.0/24", "restrict=on",
             f"hostfwd=tcp:{net.bind}:{net.host_port}-:22"]
    parts += [f"guestfwd=tcp:{g.guest_ip}:{g.guest_port}-tcp:{g.host}:{g.host_port}"
              for g in net.guest_forwards]
    return ",".join(parts)


async def ensure_user(name: str) -> None:
    """Create the unprivileged system user ``name`` unless it exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        await run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                  "--shell", "/usr/sbin/nologin", name)
        log.info("agent.vm_user_created", user=name)


def host_tsc_khz() -> int:
    """The host's TSC frequency in kHz, from /proc/cpuinfo (TCG guests need it given)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return 2_000_000


class QemuMicroVM(VMM):
    name = "qemu"

    def __init__(self, binary: str, accel: str, tsc_khz: int | None,
                 run_as: str | None = None) -> None:
        self.binary = binary
        self.accel = accel
        self.tsc_khz = tsc_khz or host_tsc_khz()
        self.run_as = run_as if run_as and os.geteuid() == 0 else None

    def argv(self, plan: LaunchPlan) -> list[str]:
        d = plan.vm_dir
        cmdline = f"{plan.cmdline} tsc_early_khz={self.tsc_khz}"
        argv = [
            self.binary, "-name", f"slices-{plan.vm_id}",
            "-M", "microvm,x-option-roms=off,rtc=on", "-accel", self.accel,
            "-m", str(plan.memory_mib), "-smp", str(plan.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-S",
            "-sandbox", SANDBOX if self.run_as else SANDBOX + ",elevateprivileges=deny",
            "-chardev",
            f"socket,id=console,path={control_socket(d, 'console')},server=on,wait=off",
            "-serial", "chardev:console",
            "-kernel", str(plan.kernel), "-append", cmdline,
            "-drive", f"id=root,file={plan.rootfs},format=raw,if=none",
            "-device", "virtio-blk-device,drive=root",
            "-drive", f"id=seed,file={plan.seed},format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=seed",
            "-qmp", f"unix:{control_socket(d, 'qmp')},server=on,wait=off",
        ]
        if self.run_as:
            argv += ["-runas", self.run_as]
        if plan.initrd:
            argv += ["-initrd", str(plan.initrd)]
        if isinstance(plan.net, TapNet):
            argv += ["-netdev", f"tap,id=net0,ifname={plan.net.tap},script=no,downscript=no"]
        else:
            argv += ["-netdev", user_netdev(plan.net)]
        argv += ["-device", f"virtio-net-device,netdev=net0,mac={plan.net.mac}"]
        return argv

    async def launch(self, plan: LaunchPlan) -> Launched:
        if self.run_as:
            await ensure_user(self.run_as)
        qmp_socket = control_socket(plan.vm_dir, "qmp")
        for kind in ("qmp", "console"):
            control_socket(plan.vm_dir, kind).unlink(missing_ok=True)
        log_path = plan.vm_dir / "vmm.log"
        with log_path.open("wb") as errors:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(plan), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=errors, start_new_session=True,
            )
        console: int | None = None
        try:
            await wait_until(lambda: qmp_socket.exists() or proc.returncode is not None,
                             LAUNCH_TIMEOUT, "QEMU's QMP socket")
            if proc.returncode is not None:
                raise VMMError(f"QEMU failed ({proc.returncode}): "
                               f"{log_path.read_text(errors='replace').strip()}")
            console = self.open_console(plan.vm_dir)
            await qmp(qmp_socket, "cont", timeout=LAUNCH_TIMEOUT)  # answered once QEMU is up
        except (OSError, VMMError, TimeoutError) as exc:
            if console is not None:
                os.close(console)
            await kill_process(proc.pid, plan.vm_dir)
            raise VMMError(str(exc)) from exc
        log.info("agent.qemu_started", vm_id=plan.vm_id, pid=proc.pid, user=self.run_as)
        return Launched(pid=proc.pid, console=console)

    def open_console(self, vm_dir: Path) -> int:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(control_socket(vm_dir, "console")))
            sock.setblocking(False)
            return sock.detach()

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
