"""API shapes of microVM hosts: agent registration, heartbeats, the admin view."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field, SecretStr


class Capacity(BaseModel):
    vcpus: int = Field(ge=0)
    memory_mib: int = Field(ge=0)
    disk_free_mib: int = Field(ge=0)
    vms_running: int = Field(default=0, ge=0)
    vcpus_used: int = Field(default=0, ge=0)
    memory_used_mib: int = Field(default=0, ge=0)


class HostRegistration(Capacity):
    """An agent introducing itself; ``token`` is the bearer the service will call it with."""

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(pattern=r"^https?://", max_length=500)
    token: SecretStr = Field(min_length=16)
    vmm: str = "qemu"
    network_mode: str = "bridge"
    labels: dict[str, str] = {}


class RegistrationOut(BaseModel):
    id: str
    heartbeat_seconds: int


class Heartbeat(Capacity):
    metrics: dict[str, Any] = {}


class HeartbeatOut(BaseModel):
    status: str


class HostOut(BaseModel):
    id: str
    name: str
    url: str
    status: str
    vmm: str
    network_mode: str
    vcpus: int
    vcpus_used: int
    memory_mib: int
    memory_used_mib: int
    disk_free_mib: int
    vms_running: int
    last_heartbeat_at: dt.datetime | None
    labels: dict[str, Any]
    metrics: dict[str, Any]
    resources: list[str] = Field(default=[], description="the live resources placed on the host")
