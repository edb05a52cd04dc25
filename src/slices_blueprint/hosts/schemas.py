"""API shapes of microVM hosts: enrolments and the admin view (what agents send is
:mod:`slices_blueprint.agent.protocol`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from slices_blueprint.agent.protocol import HostName


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
