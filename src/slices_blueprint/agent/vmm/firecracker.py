"""Firecracker backend, driven through its documented API on the ``--api-sock`` socket.

Order of calls: PUT /machine-config, /boot-source, /drives/rootfs, /drives/seed,
/network-interfaces/eth0, then PUT /actions ``InstanceStart``; pause and resume are
PATCH /vm ``Paused``/``Resumed``. The guest's serial console is Firecracker's stdout,
kept in ``console.log``; ``--log-path`` puts the VM directory on its command line, which is
how the agent recognises its processes. Firecracker boots an uncompressed ``vmlinux`` (not a bzImage) and
has no user-mode networking, so it needs bridge mode. The jailer is not used yet.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import structlog

from slices_blueprint.agent.vmm.base import (
    VMM,
    LaunchPlan,
    TapNet,
    VMMError,
    control_socket,
    kill_process,
)
from slices_blueprint.agent.waiting import wait_until

log = structlog.get_logger(__name__)


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
        if not isinstance(plan.net, TapNet):
            raise VMMError("Firecracker needs bridge networking (a TAP per VM)")
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


class FirecrackerVMM(VMM):
    name = "firecracker"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    async def launch(self, plan: LaunchPlan) -> int:
        sock = control_socket(plan.vm_dir, "api")
        sock.unlink(missing_ok=True)
        fc_log = plan.vm_dir / "firecracker.log"
        fc_log.touch()
        with plan.console_log.open("ab") as console:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.binary, "--api-sock", str(sock), "--id", plan.vm_id[:60],
                    "--log-path", str(fc_log),
                    stdin=asyncio.subprocess.DEVNULL, stdout=console, stderr=console,
                    start_new_session=True,
                )
            except OSError as exc:
                raise VMMError(f"cannot run {self.binary}: {exc}") from exc
        api = FirecrackerAPI(sock)
        try:
            await wait_until(sock.exists, 5.0, "Firecracker API socket")
            await api.configure(plan)
            await api.start()
        except (VMMError, TimeoutError) as exc:
            await kill_process(proc.pid, plan.vm_dir)
            raise VMMError(str(exc)) from exc
        finally:
            await api.close()
        log.info("agent.firecracker_started", vm_id=plan.vm_id, pid=proc.pid)
        return proc.pid

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
