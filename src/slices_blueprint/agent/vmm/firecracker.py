"""Firecracker backend, driven through its documented API on the ``--api-sock`` socket.

Order of calls: PUT /machine-config, /boot-source, /drives/rootfs, /drives/seed,
/network-interfaces/eth0, then PUT /actions ``InstanceStart``; pause and resume are
PATCH /vm ``Paused``/``Resumed``. The guest's serial console is Firecracker's stdout, a
FIFO in the VM directory that the agent reads into the capped ``console.log``
(``console.py``; while no agent reads it, Firecracker's console writes fail instead of
filling a disk). ``--log-path`` puts the VM directory on its command line, which is
how the agent recognises its processes. Firecracker boots an uncompressed ``vmlinux`` (not a
bzImage) and has no user-mode networking, so it needs bridge mode. With a jailer configured
(``jailer.py``) it runs chrooted as an unprivileged user; the VM's control-socket path is
then a symlink to the API socket inside the chroot.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import httpx
import structlog

from slices_blueprint.agent.vmm.base import (
    VMM,
    Launched,
    LaunchPlan,
    TapNet,
    VMMError,
    control_socket,
    kill_process,
)
from slices_blueprint.agent.vmm.jailer import Jailer
from slices_blueprint.agent.waiting import wait_until

log = structlog.get_logger(__name__)

ID_MAX = 64  # Firecracker's limit on --id
CONSOLE_FIFO = "console.fifo"


class FirecrackerAPI:
    """The Firecracker REST API over one Unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://localhost", timeout=10,
        )

    async def call(self, method: str, path: str, body: dict[str, Any]) -> None:
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise VMMError(f"Firecracker {method} {path}: {exc}") from exc
        if response.status_code >= 300:
            fault = response.json().get("fault_message", response.text) if response.content else ""
            raise VMMError(f"Firecracker {method} {path}: {response.status_code} {fault}")

    async def configure(self, plan: LaunchPlan) -> None:
        assert isinstance(plan.net, TapNet)
        await self.call("PUT", "/machine-config",
                        {"vcpu_count": plan.vcpus, "mem_size_mib": plan.memory_mib, "smt": False})
        boot: dict[str, Any] = {"kernel_image_path": str(plan.kernel), "boot_args": plan.cmdline}
        if plan.initrd:
            boot["initrd_path"] = str(plan.initrd)
        await self.call("PUT", "/boot-source", boot)
        for drive_id, path, read_only in (("rootfs", plan.rootfs, False),
                                          ("seed", plan.seed, True)):
            await self.call("PUT", f"/drives/{drive_id}", {
                "drive_id": drive_id, "path_on_host": str(path),
                "is_root_device": False, "is_read_only": read_only,
            })
        await self.call("PUT", "/network-interfaces/eth0", {
            "iface_id": "eth0", "host_dev_name": plan.net.tap, "guest_mac": plan.net.mac,
        })

    async def start(self) -> None:
        await self.call("PUT", "/actions", {"action_type": "InstanceStart"})

    async def set_state(self, state: str) -> None:
        await self.call("PATCH", "/vm", {"state": state})

    async def close(self) -> None:
        await self.client.aclose()


def instance_id(vm_dir: Path) -> str:
    """A valid Firecracker/jailer ``--id`` (letters, digits, hyphens; at most 64), unique
    per VM directory: the VM id's legal characters plus a hash of the directory."""
    digest = hashlib.sha256(str(vm_dir).encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9-]", "-", vm_dir.name)[:ID_MAX - len(digest) - 1]
    return f"{readable}-{digest}"


class FirecrackerVMM(VMM):
    name = "firecracker"

    def __init__(self, binary: str, jailer: Jailer | None = None) -> None:
        self.binary = binary
        self.jailer = jailer

    @property
    def tap_owner(self) -> tuple[int, int] | None:
        return (self.jailer.uid, self.jailer.gid) if self.jailer else None

    async def launch(self, plan: LaunchPlan) -> Launched:
        if not isinstance(plan.net, TapNet):
            raise VMMError("Firecracker needs bridge networking (a TAP per VM)")
        sock = control_socket(plan.vm_dir, "api")
        sock.unlink(missing_ok=True)
        argv, api_plan = await self._command(plan, sock)
        fifo = plan.vm_dir / CONSOLE_FIFO
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo, 0o600)
        console = self.open_console(plan.vm_dir)  # a reader first: the writer's open waits
        try:
            pid = await self._start(plan, argv, api_plan, sock)
        except BaseException:
            os.close(console)
            raise
        log.info("agent.firecracker_started", vm_id=plan.vm_id, pid=pid,
                 jailed=self.jailer is not None)
        return Launched(pid=pid, console=console)

    async def _start(self, plan: LaunchPlan, argv: list[str], api_plan: LaunchPlan,
                     sock: Path) -> int:
        """Run Firecracker with the console FIFO as stdout, configure and start the VM."""
        errors_path = plan.vm_dir / "vmm.log"
        fifo = plan.vm_dir / CONSOLE_FIFO
        with fifo.open("wb", buffering=0) as out, errors_path.open("wb") as errors:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=errors,
                    start_new_session=True,
                )
            except OSError as exc:
                raise VMMError(f"cannot run {argv[0]}: {exc}") from exc
        api = FirecrackerAPI(sock)
        try:
            await wait_until(lambda: sock.exists() or proc.returncode is not None, 5.0,
                             "Firecracker API socket")
            if proc.returncode is not None:
                output = errors_path.read_text(errors="replace").strip().splitlines()
                raise VMMError(f"{Path(argv[0]).name} exited with {proc.returncode}: "
                               f"{output[-1] if output else 'no output'}")
            await api.configure(api_plan)
            await api.start()
        except (VMMError, TimeoutError) as exc:
            await kill_process(proc.pid, plan.vm_dir)
            raise VMMError(str(exc)) from exc
        finally:
            await api.close()
        return proc.pid

    def open_console(self, vm_dir: Path) -> int:
        return os.open(vm_dir / CONSOLE_FIFO, os.O_RDONLY | os.O_NONBLOCK)

    async def _command(self, plan: LaunchPlan, sock: Path) -> tuple[list[str], LaunchPlan]:
        """The argv to run, and the plan with the paths as Firecracker sees them."""
        fc_log = plan.vm_dir / "firecracker.log"
        fc_log.touch()
        fc_id = instance_id(plan.vm_dir)
        if not self.jailer:
            return [self.binary, "--api-sock", str(sock), "--id", fc_id,
                    "--log-path", str(fc_log)], plan
        try:
            argv, jailed, api_sock = await asyncio.to_thread(
                self.jailer.jail, plan, fc_id, self.binary, fc_log)
        except OSError as exc:
            raise VMMError(f"cannot prepare the jail: {exc}") from exc
        sock.symlink_to(api_sock)  # a short path (Unix socket paths: at most 108 bytes)
        return argv, jailed

    async def cleanup(self, vm_dir: Path) -> None:
        if self.jailer:
            await asyncio.to_thread(self.jailer.remove, vm_dir)

    async def _set_state(self, vm_dir: Path, state: str) -> None:
        api = FirecrackerAPI(control_socket(vm_dir, "api"))
        try:
            await api.set_state(state)
        finally:
            await api.close()

    async def pause(self, vm_dir: Path) -> None:
        await self._set_state(vm_dir, "Paused")

    async def resume(self, vm_dir: Path) -> None:
        await self._set_state(vm_dir, "Resumed")
