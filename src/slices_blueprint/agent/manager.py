"""The VM lifecycle on one host: create, start, stop, pause, resume, delete, adopt, reap.

Every change is serialised per VM id, and allocations (address, SSH port) under one lock;
the record is saved before anything is created, so a crash at any point leaves a record
(or a stray directory) that the next start-up finishes or cleans.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import structlog

from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.console import ConsoleLog, record
from slices_blueprint.agent.diskspace import (
    DataDirFull,
    full_reason,
    out_of_space,
    require_room_to_start,
)
from slices_blueprint.agent.images import ImageCache, writable_disk
from slices_blueprint.agent.network import (
    USER_MODE_GUEST,
    BridgeNetwork,
    Forward,
    ServicePath,
    bridgeable,
    mac_for,
    tap_name,
)
from slices_blueprint.agent.protocol import SERVICE_ADDRESSES, VMSpec
from slices_blueprint.agent.seed import write_seed
from slices_blueprint.agent.state import ROOT_DISK, SEED_DISK, StateStore, VMRecord
from slices_blueprint.agent.vmm.base import (
    VMM,
    GuestForward,
    LaunchPlan,
    TapNet,
    UserNet,
    VMMError,
    kill_process,
    process_alive,
    remove_control_sockets,
    vmm_processes,
)
from slices_blueprint.agent.waiting import wait_until

log = structlog.get_logger(__name__)


class GuestServiceRefused(ValueError):
    """A guest service a bridged guest cannot be given (its target is not a routable IPv4
    address of this host's network: a loopback address or a name)."""


def check_bridged_services(spec: VMSpec) -> None:
    """Refuse, naming them, the guest services a bridged guest could not reach (rather than
    boot a guest that silently lacks them)."""
    refused = [f"{p.target}:{p.target_port}" for p in service_paths(spec) if not bridgeable(p.target)]
    if refused:
        raise GuestServiceRefused(
            f"guest services {', '.join(refused)} cannot be forwarded to a bridged guest: their "
            "target must be an IPv4 address of the host's network (for QKD, set the service's "
            "qkd_kme_public_host to one), or run this host in user-mode networking")


class VMNotFound(LookupError):
    pass


class VMConflict(Exception):
    """The request does not fit the VM's current state."""


class VMManager:
    def __init__(self, settings: AgentSettings, vmm: VMM) -> None:
        self.settings = settings
        self.vmm = vmm
        self.store = StateStore(settings.vms_dir)
        self.images = ImageCache(settings.cache_dir, settings.images,
                                 vmlinux=settings.vmm == "firecracker",
                                 image_dir=settings.image_dir)
        self.mode = settings.effective_network_mode
        self.network = BridgeNetwork(settings) if self.mode == "bridge" else None
        self._alloc_lock = asyncio.Lock()
        self._vm_locks: dict[str, asyncio.Lock] = {}
        self._consoles: dict[str, asyncio.Task[None]] = {}

    def _lock(self, vm_id: str) -> asyncio.Lock:
        return self._vm_locks.setdefault(vm_id, asyncio.Lock())

    # start-up ------------------------------------------------------------------------------
    async def startup(self) -> dict[str, list[str]]:
        """Prepare the host, re-adopt running VMs and reap orphans; answer what was done."""
        if self.network:
            await asyncio.to_thread(self.network.ensure_host)
        report: dict[str, list[str]] = {"adopted": [], "marked_stopped": [], "killed": [],
                                        "taps_removed": [], "dirs_removed": []}
        for path in self.store.stray_dirs():
            self.store.remove(path.name)
            report["dirs_removed"].append(path.name)
        records = {r.id: r for r in self.store.all()}
        for pid, vm_id in vmm_processes(self.settings.vms_dir).items():
            record = records.get(vm_id)
            if record is None or record.pid != pid:
                log.warning("agent.orphan_vmm_killed", vm_id=vm_id, pid=pid)
                await kill_process(pid, self.store.vm_dir(vm_id))
                report["killed"].append(vm_id)
        for record in records.values():
            if record.state in ("running", "paused", "creating"):
                if process_alive(record.pid, self.store.vm_dir(record.id)):
                    report["adopted"].append(record.id)
                    await self._reattach_console(record.id)
                    continue
                if record.state == "creating":  # the agent died half-way through a create
                    record.state, record.reason = "error", "the agent stopped during the create"
                else:
                    record.state = "stopped"
                    record.reason = "the VMM process was gone when the agent started"
                record.pid = None
                self.store.save(record)
                report["marked_stopped"].append(record.id)
        if self.network:
            live = {tap_name(r.id) for r in records.values() if r.state in ("running", "paused")}
            for tap in await asyncio.to_thread(self.network.taps):
                if tap not in live:
                    await asyncio.to_thread(self.network.remove_tap, tap)
                    report["taps_removed"].append(tap)
        await self._sync_rules()
        log.info("agent.started", **{k: len(v) for k, v in report.items()})
        return report

    # queries -------------------------------------------------------------------------------
    def get(self, vm_id: str) -> VMRecord:
        record = self.store.get(vm_id)
        if record is None:
            raise VMNotFound(vm_id)
        return record

    def list(self) -> list[VMRecord]:
        return self.store.all()

    def console(self, vm_id: str) -> ConsoleLog:
        return ConsoleLog(self.store.vm_dir(vm_id), self.settings.console_log_max_bytes)

    def console_tail(self, vm_id: str, lines: int) -> str:
        """The last ``lines`` lines of the VM's serial console (only the tail is read)."""
        self.get(vm_id)
        return self.console(vm_id).tail(lines)

    def guest_ready(self, record: VMRecord) -> bool:
        """Whether the guest printed the ready marker on its console since its last boot."""
        return record.state in ("running", "paused") and self.console(record.id).ready()

    async def wait_ready(self, vm_id: str, timeout: float) -> VMRecord:
        await wait_until(lambda: self.guest_ready(self.get(vm_id)), timeout,
                         f"VM {vm_id} guest ready", interval=0.02)
        return self.get(vm_id)

    # lifecycle -----------------------------------------------------------------------------
    async def create(self, spec: VMSpec) -> tuple[VMRecord, bool]:
        """Create and boot the VM; answer ``(record, created)``; same id twice: the first."""
        async with self._lock(spec.id):
            existing = self.store.get(spec.id)
            if existing is not None:
                return existing, False
            if self.network:
                check_bridged_services(spec)
            async with self._alloc_lock:
                record = self._allocate(spec)
                self._save_or_forget(record)
            log.info("agent.vm_creating", vm_id=spec.id, ipv4=record.ipv4, ssh_port=record.ssh_port)
            try:
                boot, base = await self.images.resolve(spec.image)
                record.boot = boot
                vm_dir = self.store.vm_dir(spec.id)
                await writable_disk(base, vm_dir / ROOT_DISK, spec.disk_mib)
                (vm_dir / ROOT_DISK).chmod(0o600)
                ipv4, gateway, dns = self._guest_net(record)
                await write_seed(vm_dir / SEED_DISK, spec, ipv4, gateway, dns, record.mac)
                await self._launch(record)
            except (VMMError, OSError, RuntimeError) as exc:
                await self._teardown(record)
                self.store.remove_disks(spec.id)  # never booted: a partial copy is worth nothing
                try:
                    if out_of_space(exc):  # no record kept: the caller is told (507), not left a VM
                        self._forget(spec.id, exc)
                    reason = str(exc) or type(exc).__name__
                    record.state, record.reason, record.pid = "error", reason, None
                    self._save_or_forget(record)
                finally:
                    await self._sync_rules()
                log.warning("agent.vm_create_failed", vm_id=spec.id, reason=reason)
            return record, True

    async def start(self, vm_id: str) -> VMRecord:
        async with self._lock(vm_id):
            record = self.get(vm_id)
            if record.state in ("running", "paused"):
                return record
            if record.state != "stopped":
                raise VMConflict(f"VM {vm_id} is {record.state}; only a stopped VM can start")
            require_room_to_start(self.settings.data_dir, vm_id)
            try:
                await self._launch(record)
            except (VMMError, OSError, RuntimeError) as exc:
                await self._stay_stopped(record, exc)
                raise
            return record

    async def stop(self, vm_id: str) -> VMRecord:
        """Power off (the disk is kept); ``start`` boots it again."""
        async with self._lock(vm_id):
            record = self.get(vm_id)
            if record.state == "stopped":
                return record
            await self._teardown(record)
            record.state, record.pid, record.reason = "stopped", None, None
            self.store.save(record)
            await self._sync_rules()
            log.info("agent.vm_stopped", vm_id=vm_id)
            return record

    async def pause(self, vm_id: str) -> VMRecord:
        return await self._pause_resume(vm_id, pause=True)

    async def resume(self, vm_id: str) -> VMRecord:
        return await self._pause_resume(vm_id, pause=False)

    async def _pause_resume(self, vm_id: str, *, pause: bool) -> VMRecord:
        async with self._lock(vm_id):
            record = self.get(vm_id)
            target = "paused" if pause else "running"
            if record.state == target:
                return record
            if record.state not in ("running", "paused"):
                raise VMConflict(f"VM {vm_id} is {record.state}; it must be running or paused")
            vm_dir = self.store.vm_dir(vm_id)
            await (self.vmm.pause(vm_dir) if pause else self.vmm.resume(vm_dir))
            record.state = target
            self.store.save(record)
            log.info("agent.vm_" + target, vm_id=vm_id)
            return record

    async def delete(self, vm_id: str) -> bool:
        """Kill the VMM, remove TAP, rules and files; answer whether the VM existed."""
        async with self._lock(vm_id):
            record = self.store.get(vm_id)
            if record is None:
                return False
            await self._teardown(record)
            self.store.remove(vm_id)
            await self._sync_rules()
            log.info("agent.vm_deleted", vm_id=vm_id)
        self._vm_locks.pop(vm_id, None)
        return True

    # internals -----------------------------------------------------------------------------
    async def _stay_stopped(self, record: VMRecord, exc: BaseException) -> None:
        """Undo a start that failed: no VMM process, TAP or rules left, the VM stopped with
        its disk and its record as before (a record that could not be saved is the one on
        disk, whole); a full data directory is raised as :class:`DataDirFull`, saying so."""
        await self._teardown(record)
        record.state, record.pid = "stopped", None
        record.reason = f"the last start failed: {exc}" if str(exc) else None
        try:
            self.store.save(record)
        except OSError as save_error:
            log.warning("agent.vm_record_unsaved", vm_id=record.id, error=str(save_error))
        finally:
            await self._sync_rules()
        log.warning("agent.vm_start_failed", vm_id=record.id, reason=str(exc))
        if out_of_space(exc):
            raise DataDirFull(full_reason(self.settings.data_dir, f"VM {record.id} to start",
                                          exc)) from exc

    def _save_or_forget(self, record: VMRecord) -> None:
        """Save a record of a VM being created; when that fails, the VM is forgotten (files
        and record: never a record stuck in ``creating``) and the error raised."""
        try:
            self.store.save(record)
        except OSError as exc:
            self._forget(record.id, exc)
            raise

    def _forget(self, vm_id: str, exc: BaseException) -> None:
        """Remove a VM whose create failed beyond recording: its files and record; a full data
        directory is raised as :class:`DataDirFull`, saying so."""
        self.store.remove(vm_id)
        log.warning("agent.vm_create_abandoned", vm_id=vm_id, error=str(exc))
        if out_of_space(exc):
            raise DataDirFull(full_reason(self.settings.data_dir, f"VM {vm_id}", exc)) from exc

    def _allocate(self, spec: VMSpec) -> VMRecord:
        records = self.store.all()
        ports = {r.ssh_port for r in records}
        port = next(
            (p for p in range(self.settings.forward_port_base,
                              self.settings.forward_port_base + self.settings.forward_port_count)
             if p not in ports and _port_free(self.settings.forward_bind, p)),
            None,
        )
        if port is None:
            raise VMConflict("no free SSH forward port on this host")
        if self.network:
            try:
                ipv4 = self.network.allocate(r.ipv4 for r in records)
            except LookupError as exc:
                raise VMConflict(str(exc)) from exc
        else:
            ipv4 = USER_MODE_GUEST[0]
        return VMRecord(spec=spec, network_mode=self.mode, ipv4=ipv4, ssh_port=port,
                        mac=mac_for(ipv4, spec.id))

    def _guest_net(self, record: VMRecord) -> tuple[str, str, str]:
        return self.network.guest_config(record.ipv4) if self.network else USER_MODE_GUEST

    async def _launch(self, record: VMRecord) -> None:
        vm_dir = self.store.vm_dir(record.id)
        assert record.boot is not None
        if self.network:
            record.tap = await asyncio.to_thread(self.network.ensure_tap, record.id,
                                                 self.vmm.tap_owner)
            net: TapNet | UserNet = TapNet(tap=record.tap, mac=record.mac)
        else:
            net = UserNet(mac=record.mac, bind=self.settings.forward_bind, host_port=record.ssh_port,
                          guest_forwards=tuple(GuestForward(p.address, p.port, p.target, p.target_port)
                                               for p in service_paths(record.spec)))
        self.console(record.id).reset()
        plan = LaunchPlan(
            vm_id=record.id, vm_dir=vm_dir, kernel=record.boot.kernel, initrd=record.boot.initrd,
            cmdline=record.boot.cmdline, rootfs=vm_dir / ROOT_DISK, seed=vm_dir / SEED_DISK,
            vcpus=record.spec.vcpus, memory_mib=record.spec.memory_mib, net=net,
        )
        launched = await self.vmm.launch(plan)
        self._record_console(record.id, launched.console)
        record.pid = launched.pid
        record.state, record.reason = "running", None
        self.store.save(record)
        await self._sync_rules()

    async def _teardown(self, record: VMRecord) -> None:
        """Kill the VMM process, remove what it used and the TAP (the disk and record stay)."""
        await kill_process(record.pid, self.store.vm_dir(record.id))
        task = self._consoles.pop(record.id, None)
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.vmm.cleanup(self.store.vm_dir(record.id))
        remove_control_sockets(self.store.vm_dir(record.id))
        if self.network:
            await asyncio.to_thread(self.network.remove_tap, tap_name(record.id))
            record.tap = None

    def _record_console(self, vm_id: str, fd: int) -> None:
        self._consoles[vm_id] = asyncio.create_task(record(vm_id, fd, self.console(vm_id)))

    async def _reattach_console(self, vm_id: str) -> None:
        try:
            fd = self.vmm.open_console(self.store.vm_dir(vm_id))
        except OSError as exc:
            log.warning("agent.console_unattached", vm_id=vm_id, error=str(exc))
            return
        self._record_console(vm_id, fd)

    async def _sync_rules(self) -> None:
        if not self.network:
            return
        forwards = [
            Forward(r.id, r.ssh_port, r.ipv4.split("/")[0], tap_name(r.id), r.mac,
                    tuple(p for p in service_paths(r.spec) if bridgeable(p.target)))
            for r in self.store.all() if r.state in ("running", "paused")
        ]
        await self.network.sync_rules(forwards)


def service_paths(spec: VMSpec) -> list[ServicePath]:
    """The guest services of a VM at their guest-side addresses (:data:`SERVICE_ADDRESSES`)."""
    return [ServicePath(address, svc.port, svc.target_host, svc.target_port)
            for address, svc in zip(SERVICE_ADDRESSES, spec.services, strict=False)]


def _port_free(bind: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((bind, port))
        except OSError:
            return False
    return True
