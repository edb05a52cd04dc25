"""API shapes of microVM hosts: enrolments, agent registration, heartbeats, the admin view."""

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


HostName = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class EnrolmentRequest(BaseModel):
    """An admin asking for a one-time enrolment token for the host ``name``."""

    name: str = HostName
    replace: bool = Field(default=False, description=(
        "let the token take over an existing host of that name (a reinstalled host, or one "
        "whose token can no longer be read); otherwise a taken name is refused (409)"))


class EnrolmentOut(BaseModel):
    name: str
    replace: bool
    expires_at: dt.datetime
    token: str = Field(description="shown once: the agent's SLICES_AGENT_ENROLMENT_TOKEN")


class HostRegistration(Capacity):
    """An agent introducing itself: ``token`` is the bearer the service will call it with,
    ``cert_pem`` the certificate its HTTPS endpoint ``url`` presents (pinned)."""

    name: str = HostName
    url: str = Field(pattern=r"^https://", max_length=500)
    token: SecretStr = Field(min_length=16)
    cert_pem: str = Field(max_length=16_000)
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
    cert_sha256: str | None = Field(description="the pinned certificate's SHA-256 fingerprint")
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
