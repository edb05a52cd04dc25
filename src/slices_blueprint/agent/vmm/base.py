"""The interface every VMM backend implements, and the process handling they share.

Every VMM process the agent starts has its VM directory (``.../vms/<id>/``) on its command
line; that is how processes are recognised after an agent restart and how orphans (a VMM
process with no record) are found.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import structlog

from slices_blueprint.agent.waiting import wait_until

log = structlog.get_logger(__name__)


class VMMError(Exception):
    """The VMM refused or failed; the message is shown to the client."""


@dataclass(frozen=True)
class TapNet:
    tap: str
    mac: str


@dataclass(frozen=True)
class GuestForward:
    """One service a user-mode guest may reach: connections to ``guest_ip:guest_port`` inside
    the guest's network go to ``host:host_port`` (QEMU ``guestfwd``)."""

    guest_ip: str
    guest_port: int
    host: str
    host_port: int


@dataclass(frozen=True)
class UserNet:
    """QEMU user-mode networking, restricted: one host port forwarded to the guest's port 22,
    and the guest reaches nothing outside but its ``guest_forwards``."""

    mac: str
    bind: str
    host_port: int
    guest_forwards: tuple[GuestForward, ...] = ()


@dataclass(frozen=True)
class LaunchPlan:
    vm_id: str
    vm_dir: Path
    kernel: Path
    initrd: Path | None
    cmdline: str
    rootfs: Path
    seed: Path
    vcpus: int
    memory_mib: int
    net: TapNet | UserNet


@dataclass(frozen=True)
class Launched:
    """A started VMM: its pid and the guest's serial console, a non-blocking fd to read."""

    pid: int
    console: int


class VMM(abc.ABC):
    """One hypervisor backend: start a prepared VM, pause/resume it, read its counters."""

    name: ClassVar[str]

    @property
    def tap_owner(self) -> tuple[int, int] | None:
        """The uid:gid a VM's TAP must belong to (an unprivileged VMM); None: root's."""
        return None

    @abc.abstractmethod
    async def launch(self, plan: LaunchPlan) -> Launched:
        """Start the VM; answer once the guest is booting, its console attached from the
        first byte."""

    @abc.abstractmethod
    def open_console(self, vm_dir: Path) -> int:
        """Attach again to a running VM's console (after an agent restart): a non-blocking
        fd the caller reads and closes."""

    @abc.abstractmethod
    async def pause(self, vm_dir: Path) -> None: ...

    @abc.abstractmethod
    async def resume(self, vm_dir: Path) -> None: ...

    async def cleanup(self, vm_dir: Path) -> None:
        """Remove what ``launch`` made beside the process (a jail); called once it is dead."""

    async def block_stats(self, vm_dir: Path) -> dict[str, dict[str, int]]:
        """Per-drive ``{rd_bytes, wr_bytes, rd_operations, wr_operations}``."""
        return {}


def _socket_stem(vm_dir: Path) -> Path:
    folder = Path(tempfile.gettempdir()) / f"slices-agent-{os.geteuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / hashlib.sha256(str(vm_dir).encode()).hexdigest()[:20]


def control_socket(vm_dir: Path, kind: str) -> Path:
    """A short path for the VMM's control socket (Unix socket paths must fit 108 bytes)."""
    return _socket_stem(vm_dir).with_suffix(f".{kind}")


def remove_control_sockets(vm_dir: Path) -> None:
    stem = _socket_stem(vm_dir)
    for path in stem.parent.glob(f"{stem.name}.*"):
        path.unlink(missing_ok=True)


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (it then stops being a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_alive(pid: int | None, vm_dir: Path) -> bool:
    """Whether ``pid`` is a live (non-zombie) VMM process for ``vm_dir``."""
    if not pid:
        return False
    _reap(pid)
    cmdline = _cmdline(pid)
    if cmdline is None or f"{vm_dir}/" not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def vmm_processes(vms_dir: Path) -> dict[int, str]:
    """Every live process whose command line names a VM directory: pid -> VM id."""
    prefix = f"{vms_dir}/"
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmdline = _cmdline(int(entry.name))
        if cmdline and prefix in cmdline and process_alive(int(entry.name), vms_dir):
            vm_id = cmdline.split(prefix, 1)[1].split("/", 1)[0]
            found[int(entry.name)] = vm_id
    return found


async def kill_process(pid: int | None, vm_dir: Path, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; a process already gone is success."""
    if not process_alive(pid, vm_dir):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        await wait_until(lambda: not process_alive(pid, vm_dir), grace, "VMM exit")
    except TimeoutError:
        log.warning("agent.vmm_sigkill", pid=pid, vm_dir=str(vm_dir))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: not process_alive(pid, vm_dir), 5.0, "VMM exit after SIGKILL")


async def run(*argv: str, timeout: float = 60.0) -> str:
    """Run a helper command; raise :class:`VMMError` with its stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise VMMError(f"{Path(argv[0]).name} failed: {err.decode(errors='replace').strip()}")
    return out.decode()
