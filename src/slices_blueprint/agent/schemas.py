"""The agent API's response shapes."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel

from slices_blueprint.agent.state import VMRecord, VMState


class SSHAccess(BaseModel):
    host: str
    port: int
    user: str = "root"


class VMView(BaseModel):
    id: str
    name: str
    state: VMState
    reason: str | None
    guest_ready: bool
    vcpus: int
    memory_mib: int
    disk_mib: int
    ipv4: str
    network_mode: Literal["bridge", "user"]
    ssh: SSHAccess
    labels: dict[str, str]
    created_at: dt.datetime

    @classmethod
    def of(cls, record: VMRecord, ready: bool, public_host: str) -> VMView:
        return cls(
            id=record.id, name=record.spec.name, state=record.state, reason=record.reason,
            guest_ready=ready, vcpus=record.spec.vcpus, memory_mib=record.spec.memory_mib,
            disk_mib=record.spec.disk_mib, ipv4=record.ipv4, network_mode=record.network_mode,
            ssh=SSHAccess(host=public_host, port=record.ssh_port), labels=record.spec.labels,
            created_at=record.created_at,
        )


class HostView(BaseModel):
    name: str
    vmm: str
    network_mode: Literal["bridge", "user"]
    images: list[str]
    vcpus: int
    memory_mib: int
    disk_free_mib: int
    vms_running: int
    vcpus_used: int
    memory_used_mib: int
