"""Agent settings, read from the environment (prefix ``SLICES_AGENT_``)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from slices_blueprint.agent.protocol import ImageSource


def default_agent_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/slices-blueprint/agent")
    return Path(platformdirs.user_data_dir("slices-blueprint", appauthor=False)) / "agent"


class AgentSettings(BaseSettings):
    """Every setting of ``slices-blueprint agent``; README.md documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="SLICES_AGENT_", env_nested_delimiter="__", extra="ignore",
        hide_input_in_errors=True,  # a rejected value may be a secret: never echo it
    )

    data_dir: Path = Field(default_factory=default_agent_dir)
    name: str = Field(default_factory=socket.gethostname)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8700
    # how the service reaches us (always HTTPS, see tls.py); default https://listen:port
    advertise_url: str | None = Field(default=None, pattern=r"^https://")
    public_host: str | None = None  # address users SSH to; default: advertise_url's host

    # Auth: a fixed token, or the one generated in data_dir/token (see auth.py)
    token: SecretStr | None = None
    service_url: str | None = None
    # Host identity: the one-time token an admin issued for this host's name
    # (`slices-blueprint admin host-enrol NAME`); used once, then the host's own token is
    enrolment_token: SecretStr | None = None
    heartbeat_seconds: float = 15.0
    labels: dict[str, str] = {}

    # VMM
    vmm: Literal["qemu", "firecracker"] = "qemu"
    qemu_binary: str = "qemu-system-x86_64"
    qemu_accel: str = "tcg"  # "kvm" where nested virtualisation works
    firecracker_binary: str = "firecracker"  # needs an uncompressed vmlinux kernel image
    tsc_khz: int | None = None  # for tsc_early_khz=; default: read from /proc/cpuinfo
    # Firecracker's jailer (chroot per VM in <vm dir>/jail, runs Firecracker as uid:gid)
    jailer_binary: str | None = None  # None: Firecracker runs unjailed, as the agent's user
    jailer_uid: int | None = None  # required with the jailer: a dedicated unprivileged user
    jailer_gid: int | None = None
    jailer_cgroup_version: int = Field(default=2, ge=1, le=2)
    jailer_netns: Path | None = None  # a netns handle to join; it must hold the bridge + TAPs

    # Networking
    network_mode: Literal["auto", "bridge", "user"] = "auto"  # auto: bridge as root, else user
    bridge: str = "slicesbr0"
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("172.30.0.0/24")
    dns: str = "9.9.9.9"
    egress_interface: str | None = None  # NAT only out of this interface when set
    manage_ip_forward: bool = True  # set net.ipv4.ip_forward=1 in our network namespace
    forward_bind: str = "0.0.0.0"  # user mode: where QEMU listens for the SSH forwards
    forward_port_base: int = 22000
    forward_port_count: int = 1000

    # Guest isolation: what a VM may reach, the VMM's user, the console's cap on disk
    guest_allowed_networks: list[ipaddress.IPv4Network] = []  # non-public nets guests may reach
    vm_user: str | None = "slices-vm"  # QEMU -runas as root; created if missing; "" keeps root
    console_log_max_bytes: int = Field(default=8 * 1024 * 1024, ge=256 * 1024)

    # Capacity offered to the service
    vcpu_overcommit: float = 4.0
    reserved_memory_mib: int = 512

    # Images: the built-in "default" plus any named here. URLs are http(s), or file: URLs of
    # files inside image_dir (unset: no file: URLs at all)
    images: dict[str, ImageSource] = {}
    image_dir: Path | None = None

    @model_validator(mode="after")
    def _jailer_user_given(self) -> AgentSettings:
        if self.jailer_binary and (self.jailer_uid is None or self.jailer_gid is None):
            raise ValueError("jailer_binary needs jailer_uid and jailer_gid")
        return self

    @property
    def effective_network_mode(self) -> Literal["bridge", "user"]:
        if self.network_mode == "auto":
            return "bridge" if os.geteuid() == 0 else "user"
        return self.network_mode

    @property
    def url(self) -> str:
        return (self.advertise_url or f"https://{self.listen_host}:{self.listen_port}").rstrip("/")

    @property
    def vms_dir(self) -> Path:
        return self.data_dir / "vms"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"
