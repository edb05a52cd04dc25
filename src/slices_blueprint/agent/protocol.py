"""The typed contract between the service and a host agent, used on both sides.

The agent's HTTP API answers :class:`VMView` and :class:`HostView` and takes :class:`VMSpec`;
it calls the service with :class:`HostRegistration` and :class:`Heartbeat`. The service's
microVM driver (``providers/microvm``) and hosts domain (``hosts/``) parse the same models.
This module imports nothing else of the package, so either side may depend on it.

A microVM's ``provider_resource_id`` is ``<host uuid>/<vm id>``: :func:`vm_ref` builds it
and :func:`split_vm_ref` reads it; nothing else knows the format.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

VMState = Literal["creating", "running", "paused", "stopped", "error"]
NetworkMode = Literal["bridge", "user"]
VM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
HostName = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def vm_ref(host_id: uuid.UUID | str, vm_id: str) -> str:
    """The service's id of VM ``vm_id`` on host ``host_id``."""
    return f"{host_id}/{vm_id}"


def split_vm_ref(ref: str) -> tuple[uuid.UUID, str]:
    """``(host id, vm id)`` of a :func:`vm_ref`; :class:`ValueError` when it is not one."""
    host_id, sep, vm_id = ref.partition("/")
    if not sep:
        raise ValueError(f"not a microVM id: {ref!r}")
    return uuid.UUID(host_id), vm_id


# ------------------------------------------------------------------ the agent's API


class FileRef(BaseModel):
    """A file to download into the image cache; ``sha256`` is checked when given."""

    url: str
    sha256: str | None = None


class ImageSource(BaseModel):
    """A bootable image: kernel, optional initrd, root filesystem, kernel command line."""

    kernel: FileRef
    rootfs: FileRef
    initrd: FileRef | None = None
    cmdline: str = "console=ttyS0 panic=-1 quiet"


class GuestFile(BaseModel):
    """A file placed in the guest at its first boot (cloud-init ``write_files``, or the
    default image's init); the content may be secret: it stays in the seed disk (0600)."""

    path: str = Field(pattern=r"^(/[A-Za-z0-9._-]+)+$", max_length=255)
    content: str = Field(max_length=64 * 1024)
    mode: int = Field(default=0o644, ge=0, le=0o777)

    @field_validator("path")
    @classmethod
    def _no_dot_parts(cls, path: str) -> str:
        if any(part in (".", "..") for part in path.split("/")):
            raise ValueError("path: no '.' or '..' parts")
        return path


class GuestService(BaseModel):
    """A service the guest may reach as ``hostname:port``; the agent gives it a fixed address
    (:data:`SERVICE_ADDRESSES`) in ``/etc/hosts`` and forwards that address and port to
    ``target_host:target_port`` only (user mode: a QEMU ``guestfwd``; bridge mode: a DNAT
    for this guest's address)."""

    hostname: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    port: int = Field(ge=1, le=65535)
    target_host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:-]+$")
    target_port: int = Field(ge=1, le=65535)


SERVICE_ADDRESSES = tuple(f"10.0.2.{100 + i}" for i in range(16))
"""The guest-side addresses of a VM's :class:`GuestService` entries, in order (inside QEMU's
user-mode network; bridged guests reach them through their gateway)."""


class VMSpec(BaseModel):
    """What a client asks for; creating twice with the same id returns the first VM."""

    id: str = Field(pattern=VM_ID_PATTERN)
    name: str = Field(default="microvm", max_length=63)
    vcpus: int = Field(default=1, ge=1, le=64)
    memory_mib: int = Field(default=256, ge=64, le=1024 * 1024)
    disk_mib: int = Field(default=256, ge=16)
    image: str | ImageSource = "default"
    ssh_authorized_keys: list[str] = []
    userdata: str | None = None
    labels: dict[str, str] = {}
    files: list[GuestFile] = Field(default=[], max_length=32)  # at most 2 MiB: the seed disk holds 4
    services: list[GuestService] = Field(default=[], max_length=len(SERVICE_ADDRESSES))


class SSHAccess(BaseModel):
    host: str
    port: int
    user: str = "root"


class VMView(BaseModel):
    """One VM as the agent reports it."""

    id: str
    name: str
    state: VMState
    reason: str | None
    guest_ready: bool
    vcpus: int
    memory_mib: int
    disk_mib: int
    ipv4: str
    network_mode: NetworkMode
    ssh: SSHAccess
    labels: dict[str, str]
    created_at: dt.datetime


class HostView(BaseModel):
    name: str
    vmm: str
    network_mode: NetworkMode
    images: list[str]
    vcpus: int
    memory_mib: int
    disk_free_mib: int
    vms_running: int
    vcpus_used: int
    memory_used_mib: int


# ------------------------------------------------------------------ the service's API


class Capacity(BaseModel):
    vcpus: int = Field(ge=0)
    memory_mib: int = Field(ge=0)
    disk_free_mib: int = Field(ge=0)
    vms_running: int = Field(default=0, ge=0)
    vcpus_used: int = Field(default=0, ge=0)
    memory_used_mib: int = Field(default=0, ge=0)


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

    def wire(self) -> dict[str, Any]:
        """The request body, token included (a plain dump would mask it)."""
        return {**self.model_dump(mode="json"), "token": self.token.get_secret_value()}


class RegistrationOut(BaseModel):
    id: str
    heartbeat_seconds: int


class Heartbeat(Capacity):
    metrics: dict[str, Any] = {}


class HeartbeatOut(BaseModel):
    status: str
