"""VM records on disk: ``data_dir/vms/<id>/vm.json``, written atomically.

The record is the single source of truth for what should exist on the host: address and
port allocations, TAP names and NAT rules are all derived from the set of records, so an
agent restart re-adopts its VMs and anything not backed by a record is an orphan.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from slices_blueprint.agent.protocol import NetworkMode, SSHAccess, VMSpec, VMState, VMView

ROOT_DISK, SEED_DISK = "rootfs.img", "seed.img"  # in each VM's directory


class BootFiles(BaseModel):
    kernel: Path
    initrd: Path | None
    cmdline: str


class VMRecord(BaseModel):
    """What the agent knows of one VM."""

    spec: VMSpec
    state: VMState = "creating"
    reason: str | None = None
    network_mode: NetworkMode
    ipv4: str  # guest address with prefix, e.g. 172.30.0.2/24
    mac: str
    tap: str | None = None
    ssh_port: int
    pid: int | None = None
    boot: BootFiles | None = None
    created_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def view(self, ready: bool, public_host: str) -> VMView:
        """The record as the agent's API shows it."""
        return VMView(
            id=self.id, name=self.spec.name, state=self.state, reason=self.reason,
            guest_ready=ready, vcpus=self.spec.vcpus, memory_mib=self.spec.memory_mib,
            disk_mib=self.spec.disk_mib, ipv4=self.ipv4, network_mode=self.network_mode,
            ssh=SSHAccess(host=public_host, port=self.ssh_port), labels=self.spec.labels,
            created_at=self.created_at,
        )

    @property
    def id(self) -> str:
        return self.spec.id


class StateStore:
    """Reads and writes VM records and owns each VM's directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)

    def vm_dir(self, vm_id: str) -> Path:
        return self.root / vm_id

    def get(self, vm_id: str) -> VMRecord | None:
        try:
            return VMRecord.model_validate_json((self.vm_dir(vm_id) / "vm.json").read_text())
        except FileNotFoundError:
            return None

    def save(self, record: VMRecord) -> None:
        """Write the record atomically, readable by the agent's user only (it holds the
        user-data and keys)."""
        folder = self.vm_dir(record.id)
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)  # also a directory an older agent made
        tmp = folder / "vm.json.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(record.model_dump_json(indent=2))
            os.replace(tmp, folder / "vm.json")
        except OSError:
            tmp.unlink(missing_ok=True)  # the record before stays whole; no half-written one
            raise

    def all(self) -> list[VMRecord]:
        records = (self.get(p.name) for p in sorted(self.root.iterdir()) if p.is_dir())
        return [r for r in records if r is not None]

    def stray_dirs(self) -> list[Path]:
        """VM directories without a record (a create that died before saving)."""
        return [p for p in self.root.iterdir() if p.is_dir() and not (p / "vm.json").exists()]

    def remove_disks(self, vm_id: str) -> None:
        """Remove the VM's disk images (root and seed); its record stays."""
        for name in (ROOT_DISK, SEED_DISK):
            (self.vm_dir(vm_id) / name).unlink(missing_ok=True)

    def remove(self, vm_id: str) -> None:
        shutil.rmtree(self.vm_dir(vm_id), ignore_errors=True)
