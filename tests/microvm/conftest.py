"""MicroVM test hosts: each a network namespace with a veth to the test's own namespace and a
real agent process (``python -m slices_blueprint.agent``) inside, booting real QEMU microVMs.

Nothing here touches the machine's own interfaces: the root-side veth ends get addresses in
10.250.<n>.0/24 and every other change happens inside the namespaces, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from slices_blueprint.agent.default_image import cloud_kernel
from slices_blueprint.agent.vmm.base import remove_control_sockets, vmm_processes
from slices_blueprint.hosts.pinning import pinned_context
from tests.conftest import integration_unavailable
from tests.helpers import wait_answering

# Namespaces are numbered from here (10.250.(100+n).0/24): test runs side by side on one
# machine give each other room by starting at different bases.
_counter = itertools.count(int(os.environ.get("SLICES_BLUEPRINT_TEST_NET_BASE", "1")))


def require_microvm_host() -> None:
    """Skip (or fail under SLICES_BLUEPRINT_REQUIRE_INTEGRATION=1) without root, QEMU, parts."""
    if os.geteuid() != 0:
        integration_unavailable("microVM tests need root (network namespaces, TAPs, nftables)")
    for tool in ("qemu-system-x86_64", "mkfs.ext4", "resize2fs", "nft", "ip", "modprobe"):
        if shutil.which(tool) is None:
            integration_unavailable(f"{tool} is missing: apt-get install $(cat .ci/apt-microvm.txt)")
    for path in ("/bin/busybox", "/usr/sbin/dropbear"):
        if not Path(path).exists():
            integration_unavailable(f"{path} is missing: apt-get install $(cat .ci/apt-microvm.txt)")
    try:
        cloud_kernel()
    except FileNotFoundError as exc:
        integration_unavailable(str(exc))


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass
class TestHost:
    """One network namespace with an agent in it; ``url`` is reachable from the test."""

    __test__ = False
    ns: str
    index: int
    data_dir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"10.250.{self.index}.2"

    @property
    def gateway(self) -> str:
        return f"10.250.{self.index}.1"

    @property
    def url(self) -> str:
        return f"https://{self.address}:8700"

    def tls(self) -> ssl.SSLContext:
        """Trust this host's agent certificate only (made at its first start)."""
        return pinned_context((self.data_dir / "tls" / "cert.pem").read_text())

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, verify=self.tls())

    def exec(self, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.ns, *argv)

    def start_agent(self, **settings: str) -> None:
        env = {
            **os.environ,
            "SLICES_AGENT_DATA_DIR": str(self.data_dir),
            "SLICES_AGENT_LISTEN_HOST": "0.0.0.0",
            "SLICES_AGENT_LISTEN_PORT": "8700",
            "SLICES_AGENT_ADVERTISE_URL": self.url,
            "SLICES_AGENT_TOKEN": self.token,
            "SLICES_AGENT_NAME": self.ns,
            "SLICES_AGENT_NETWORK_MODE": "bridge",
            "SLICES_AGENT_HEARTBEAT_SECONDS": "1",
            **self.env,
            **{f"SLICES_AGENT_{k.upper()}": v for k, v in settings.items()},
        }
        log = (self.data_dir.parent / f"{self.ns}-agent.log").open("ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-m", "slices_blueprint.agent"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_answering(f"{self.url}/healthz", self.proc, Path(log.name), 30, verify=self.tls)

    def kill_agent(self) -> None:
        """SIGKILL the agent (its VMs keep running, as after a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def vmm_pids(self) -> dict[int, str]:
        """Live (non-zombie) processes whose command line names one of this host's VM dirs."""
        return vmm_processes(self.data_dir / "vms")

    def taps(self) -> list[str]:
        return [line.split(":")[1].strip().split("@")[0]
                for line in self.exec("ip", "-o", "link").splitlines()
                if line.split(":")[1].strip().startswith("sbt")]

    def nat_rules(self) -> str:
        return self.exec("nft", "list", "ruleset")


def _create_ns(index: int, tmp: Path) -> TestHost:
    ns = f"sbtest{os.getpid() % 10000}x{index}"
    root_end, ns_end = f"sbv{os.getpid() % 10000}x{index}", "uplink0"
    host = TestHost(ns=ns, index=100 + index, data_dir=tmp / ns)
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", root_end, "type", "veth", "peer", "name", ns_end, "netns", ns)
    sh("ip", "addr", "add", f"{host.gateway}/24", "dev", root_end)
    sh("ip", "link", "set", root_end, "up")
    host.exec("ip", "link", "set", "lo", "up")
    host.exec("ip", "addr", "add", f"{host.address}/24", "dev", ns_end)
    host.exec("ip", "link", "set", ns_end, "up")
    host.exec("ip", "route", "add", "default", "via", host.gateway)
    return host


def _destroy(host: TestHost) -> None:
    host.kill_agent()
    for pid in host.vmm_pids():
        os.kill(pid, signal.SIGKILL)
    for vm_dir in (host.data_dir / "vms").glob("*"):
        remove_control_sockets(vm_dir)
    subprocess.run(["ip", "netns", "del", host.ns], check=False)


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator:
    """A factory of test hosts (namespaces + agents), all destroyed at the end of the test."""
    require_microvm_host()
    made: list[TestHost] = []

    def prepare() -> TestHost:
        """A namespace without an agent yet (call ``start_agent`` with extra settings)."""
        host = _create_ns(next(_counter), tmp_path)
        made.append(host)
        return host

    def make(**settings: str) -> TestHost:
        host = prepare()
        host.start_agent(**settings)
        return host

    make.prepare = prepare  # type: ignore[attr-defined]
    yield make
    for host in made:
        _destroy(host)


class Relay:
    """A TCP relay from ``listen`` to ``target`` (lets an agent inside a namespace reach the
    service, which listens on the test's loopback because dev mode requires it)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.server.settimeout(0.5)
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.running = False
        self.server.close()

