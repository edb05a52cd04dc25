"""A real agent in its own network namespace boots real QEMU microVMs (TCG): lifecycle,
the SSH port-forward from outside the namespace, user-data and NAT'ed egress, pause/resume,
restart and re-adoption, orphan reaping, and complete cleanup."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from slices_blueprint.agent.vmm.base import control_socket

pytestmark = pytest.mark.microvm

BOOT_TIMEOUT = 90


def ssh_banner(host: str, port: int, timeout: float = 5.0) -> str | None:
    """The SSH server's banner line, or None when nothing answers within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).decode(errors="replace")
    except OSError:
        return None


def assert_nothing_left(host, vm_id: str, guest_ip: str, port: int) -> None:
    assert vm_id not in host.vmm_pids().values(), "a VMM process survived delete"
    assert host.taps() == [], f"TAPs left: {host.taps()}"
    rules = host.nat_rules()
    assert guest_ip not in rules and f"dport {port}" not in rules, rules
    vm_dir = host.data_dir / "vms" / vm_id
    assert not vm_dir.exists(), "VM files left"
    assert not list(control_socket(vm_dir, "qmp").parent.glob(
        control_socket(vm_dir, "x").stem + ".*")), "control socket left"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.client_address[0], self.path))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_lifecycle_port_forward_pause_resume_delete(make_host) -> None:
    host = make_host.prepare()
    # guests reach no private address unless allowed: this one stands for a public server
    host.start_agent(guest_allowed_networks=f'["{host.gateway}/32"]')
    # outside the namespace, where only NAT'ed egress from the guest can arrive
    web = http.server.ThreadingHTTPServer((host.gateway, 0), _Recorder)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    userdata = f"#!/bin/sh\nwget -q -O /dev/null http://{host.gateway}:{web.server_port}/from-$(hostname)\n"
    spec = {"id": "vm-life", "name": "life", "vcpus": 1, "memory_mib": 192, "disk_mib": 128,
            "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test@example"],
            "userdata": userdata}
    try:
        run_lifecycle(host, spec)
    finally:
        web.shutdown()
    # the user-data script ran in the guest and its request left through the host's NAT
    assert (host.address, "/from-life") in _Recorder.seen


def run_lifecycle(host, spec: dict) -> None:
    with host.client() as api:
        created = api.post("/v1/vms", json=spec, params={"wait_ready": BOOT_TIMEOUT})
        assert created.status_code == 201, created.text
        vm = created.json()
        assert vm["state"] == "running" and vm["guest_ready"], vm
        assert vm["ssh"] == {"host": host.address, "port": vm["ssh"]["port"], "user": "root"}

        again = api.post("/v1/vms", json=spec)  # idempotent by id
        assert again.status_code == 200 and again.json()["ipv4"] == vm["ipv4"]
        assert len([p for p, v in host.vmm_pids().items() if v == "vm-life"]) == 1

        port = vm["ssh"]["port"]
        assert (ssh_banner(host.address, port) or "").startswith("SSH-2.0-dropbear")

        assert api.post("/v1/vms/vm-life/pause").json()["state"] == "paused"
        assert ssh_banner(host.address, port, timeout=2) is None, "a paused guest answered"
        assert api.post("/v1/vms/vm-life/resume").json()["state"] == "running"
        assert (ssh_banner(host.address, port) or "").startswith("SSH-2.0-dropbear")

        metrics = api.get("/metrics").text
        assert 'slices_agent_vm_cpu_seconds_total{vm="vm-life"}' in metrics
        assert 'slices_agent_vm_block_bytes_total{drive="root",op="read",vm="vm-life"}' in metrics
        assert "slices_agent_host_memory_available_bytes" in metrics
        assert "slices-guest-ready" in api.get("/v1/vms/vm-life/console").text

        assert api.post("/v1/vms/vm-life/stop").json()["state"] == "stopped"
        assert "vm-life" not in host.vmm_pids().values() and host.taps() == []
        started = api.post("/v1/vms/vm-life/start").json()
        assert started["state"] == "running"
        assert api.get("/v1/vms/vm-life", params={"wait_ready": BOOT_TIMEOUT}).json()["guest_ready"]

        assert api.delete("/v1/vms/vm-life").status_code == 204
        assert api.delete("/v1/vms/vm-life").status_code == 404
        assert api.get("/v1/vms").json() == []
    assert_nothing_left(host, "vm-life", vm["ipv4"].split("/")[0], port)


def test_auth_is_never_open(make_host) -> None:
    host = make_host()
    with host.client(token="wrong") as api:
        assert api.get("/v1/vms").status_code == 401
        assert api.get("/metrics").status_code == 401
        assert api.post("/v1/vms", json={"id": "x"}).status_code == 401
        del api.headers["Authorization"]
        assert api.get("/v1/host").status_code == 401
        assert api.get("/healthz").status_code == 200
    with host.client() as api:
        assert api.get("/v1/host").json()["network_mode"] == "bridge"


def test_restart_readopts_and_reaps_orphans(make_host) -> None:
    host = make_host()
    with host.client() as api:
        for vm_id in ("vm-keep", "vm-dies"):
            response = api.post("/v1/vms", json={"id": vm_id, "memory_mib": 160, "disk_mib": 64})
            assert response.status_code == 201, response.text
        for vm_id in ("vm-keep", "vm-dies"):
            assert api.get(f"/v1/vms/{vm_id}", params={"wait_ready": BOOT_TIMEOUT}).json()[
                "guest_ready"]
        keep = api.get("/v1/vms/vm-keep").json()
    pids = {v: p for p, v in host.vmm_pids().items()}

    host.kill_agent()
    # while the agent is down: a VM dies, and orphans appear of every kind
    os.kill(pids["vm-dies"], signal.SIGKILL)
    ghost = host.data_dir / "vms" / "ghost"
    ghost.mkdir()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                               f"{ghost}/vmm"], start_new_session=True)
    host.exec("ip", "tuntap", "add", "sbtorphan0", "mode", "tap")
    Path(host.data_dir / "vms" / "stray").mkdir()

    host.start_agent()
    assert orphan.wait(10) is not None, "an orphan VMM process was not killed"
    with host.client() as api:
        kept = api.get("/v1/vms/vm-keep").json()
        assert kept["state"] == "running" and kept["ipv4"] == keep["ipv4"]
        assert host.vmm_pids().get(pids["vm-keep"]) == "vm-keep", "running VM not re-adopted"
        assert (ssh_banner(host.address, kept["ssh"]["port"]) or "").startswith("SSH-2.0")
        died = api.get("/v1/vms/vm-dies").json()
        assert died["state"] == "stopped" and "gone" in died["reason"]
        assert host.taps() == [f for f in host.taps() if f != "sbtorphan0"]
        assert len(host.taps()) == 1  # vm-keep's only
        assert not (host.data_dir / "vms" / "stray").exists()

        for vm_id in ("vm-keep", "vm-dies"):
            assert api.delete(f"/v1/vms/{vm_id}").status_code == 204
    assert host.vmm_pids() == {} and host.taps() == []


def test_user_mode_networking_fallback(make_host) -> None:
    """Without a bridge (the non-root default), QEMU's user-mode network forwards SSH."""
    host = make_host(network_mode="user")
    with host.client() as api:
        vm = api.post("/v1/vms", json={"id": "vm-user", "memory_mib": 160, "disk_mib": 64},
                      params={"wait_ready": BOOT_TIMEOUT}).json()
        assert vm["network_mode"] == "user" and vm["guest_ready"], vm
        assert (ssh_banner(host.address, vm["ssh"]["port"]) or "").startswith("SSH-2.0-dropbear")
        assert host.taps() == []
        assert api.delete("/v1/vms/vm-user").status_code == 204
    assert host.vmm_pids() == {}
