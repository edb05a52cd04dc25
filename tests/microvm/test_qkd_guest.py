"""A real microVM guest bound to a QKD network's SAE: the service places it on an agent in
its own network namespace (user-mode networking, slirp ``restrict=on``), and inside the
guest the SAE's credentials are where USER.md says (``/etc/qkd/<SAE_ID>/``), its KME is
reachable as ``https://<KME_ID>.qkd.internal`` through the forward made for it, and nothing
else on the host is. Then an ETSI GS QKD 014 status call with the guest's own files, over
mutual TLS checked against that name, through an SSH tunnel into the guest."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, wait_for
from tests.microvm.conftest import Relay
from tests.microvm.guest_tools import SSHKey
from tests.microvm.test_service_microvm import enrol, microvm_catalog
from tests.qkd.conftest import create_network, kme_port_range

pytestmark = pytest.mark.microvm

SAE = "guest-app"


def etsi_status_through(local_port: int, directory: Path, kme_id: str, slave: str) -> tuple[int, dict]:
    """``GET /api/v1/keys/<slave>/status`` at 127.0.0.1:local_port, presenting the guest's SAE
    certificate and checking the KME's against the guest's CA and name."""
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    context.load_cert_chain(directory / "sae.crt", directory / "sae.key")
    with socket.create_connection(("127.0.0.1", local_port), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname=f"{kme_id}.qkd.internal") as tls:
        tls.sendall(f"GET /api/v1/keys/{slave}/status HTTP/1.1\r\nHost: {kme_id}.qkd.internal\r\n"
                    "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_bound_microvm_guest_finds_its_credentials_and_reaches_its_kme_only(
        pg_admin_url: str, http, make_host, tmp_path: Path) -> None:
    host = make_host.prepare()
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(tmp_path / "svc", url, free_port(), host_heartbeat_seconds=1,
                                 dev_allowed_networks=["10.250.0.0/16"], qkd_kme_in_service=True,
                                 qkd_kme_host=host.gateway, qkd_kme_ports=kme_port_range())
        server = start_server(settings, url)
        port = settings.port
        relay = Relay((host.gateway, port), ("127.0.0.1", port))
        tunnel: subprocess.Popen | None = None
        try:
            api = Api(server, http)
            admin = api.token("admin")
            host.start_agent(network_mode="user", service_url=f"http://{host.gateway}:{port}",
                             enrolment_token=enrol(http, server.url, admin, host.ns))
            token = api.token("alice", "qkdvm", "qkdvm")
            network = create_network(api, token, {
                "name": "guestnet",
                "nodes": [{"name": "alice", "saes": [{"id": SAE, "machine": "vm-q"}]},
                          {"name": "bob", "saes": ["peer-app"]}],
                "links": [{"between": ["alice", "bob"], "length_km": 5}]})
            alice = next(n for n in network["nodes"] if n["name"] == "alice")
            kme_name = f"{alice['kme_id']}.qkd.internal"

            key = SSHKey(tmp_path)
            flavor, image = microvm_catalog(api, admin)
            task = api.ok("POST", "/resources", token, 202, json={"request_id": str(uuid.uuid4()), "resources": [{
                "friendly_name": "vm-q", "flavor_id": flavor, "disk_image_id": image,
                "ssh_authorized_keys": [key.public]}]})
            assert api.wait_task(token, task["id"], timeout=240)["status"] == "succeeded"
            (vm,) = api.ok("GET", "/resources", token)
            ssh = (vm["access"]["ssh_host"], vm["access"]["ssh_port"])

            folder = f"/etc/qkd/{SAE}"
            listing = key.run(*ssh, f"cd {folder} && for f in *; do echo \"$f $(stat -c '%a %u' $f)\"; done")
            assert sorted(listing.split("\n")[:-1]) == ["ca.crt 644 0", "kme.env 644 0", "sae.crt 644 0",
                                                        "sae.key 600 0"], listing
            guest = tmp_path / "from-guest"
            guest.mkdir()
            for name in ("sae.crt", "sae.key", "ca.crt", "kme.env"):
                (guest / name).write_text(key.run(*ssh, f"cat {folder}/{name}"))
            assert f"KME_URL=https://{kme_name}\n" in (guest / "kme.env").read_text()
            assert "PEER_SAE_IDS=peer-app\n" in (guest / "kme.env").read_text()

            probes = key.run(*ssh, "; ".join(
                f"if timeout 10 nc -w 5 {target} -e /bin/true; then echo '{target} open'; else echo '{target} closed'; fi"
                for target in (f"{kme_name} 443", f"10.0.2.100 {alice['kme_url'].rsplit(':', 1)[1]}",
                               f"10.0.2.2 {port}", f"{host.gateway} {port}", f"{host.gateway} 22")))
            assert [line for line in probes.splitlines() if not line.startswith("nc:")] == [f"{kme_name} 443 open",  # the forward made for it
                                           f"10.0.2.100 {alice['kme_url'].rsplit(':', 1)[1]} closed",
                                           f"10.0.2.2 {port} closed", f"{host.gateway} {port} closed",
                                           f"{host.gateway} 22 closed"], probes

            local = free_port()
            tunnel = subprocess.Popen(
                ["ssh", "-i", str(key.path), "-p", str(ssh[1]), "-N", "-o", "BatchMode=yes",
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                 "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local}:{kme_name}:443", f"root@{ssh[0]}"])
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", local)) == 0, 30, "the SSH tunnel")
            code, status = etsi_status_through(local, guest, alice["kme_id"], "peer-app")
            assert code == 200 and (status["master_SAE_ID"], status["slave_SAE_ID"]) == (SAE, "peer-app")

            shown = api.ok("GET", f"/qkd-networks/{network['id']}", token)
            delivery = next(s for s in shown["saes"] if s["sae_id"] == SAE)["delivery"]
            assert (delivery["state"], delivery["resource_id"]) == ("delivered", vm["id"])
        finally:
            if tunnel is not None:
                tunnel.kill()
                tunnel.wait(10)
            relay.close()
            server.stop()
