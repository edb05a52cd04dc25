"""The experiment file's round trip on a real microVM: the service (real PostgreSQL, worker)
with one agent registered from its own namespace booting QEMU microVMs. An experiment with
a microVM, a QKD network and a reservation of microVM capacity is exported, everything is
deleted, the file is applied, and the export is the same file."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, make_settings, start_server
from tests.experiments.conftest import NETWORK, SSH_KEY, ExpApi
from tests.helpers import wait_for
from tests.microvm.conftest import Relay
from tests.microvm.test_service_microvm import enrol, microvm_catalog, own_database  # noqa: F401 (a fixture)
from tests.qkd.conftest import kme_port_range

pytestmark = pytest.mark.microvm
BOOT = 300  # s: QEMU under TCG is slow


@pytest.fixture
def service(own_database: str, tmp_path: Path):  # noqa: F811 (the fixture imported above)
    settings = make_settings(tmp_path / "svc", own_database, free_port(), host_heartbeat_seconds=1,
                             dev_allowed_networks=["10.250.0.0/16"], qkd_kme_ports=kme_port_range())
    server = start_server(settings, own_database)
    yield server
    server.stop()


def test_export_delete_everything_apply_gives_the_same_file(service, http, make_host) -> None:
    api = ExpApi(service, http)
    admin = api.token("admin")
    port = int(service.url.rsplit(":", 1)[1])
    host = make_host.prepare()
    relay = Relay((host.gateway, port), ("127.0.0.1", port))
    token = api.token("alice", "demo", f"mvrt-{uuid.uuid4().hex[:6]}", experiment_days=90)
    try:
        host.start_agent(service_url=f"http://{host.gateway}:{port}",
                         enrolment_token=enrol(http, service.url, admin, host.ns))
        wait_for(lambda: [h for h in api.own("GET", "/hosts", admin) if h["name"] == host.ns and h["metrics"]],
                 30, "the host registered")
        flavor, image = microvm_catalog(api, admin)
        created = api.ok("POST", "/resources", token, 202, json={"request_id": str(uuid.uuid4()), "resources": [
            {"friendly_name": "vm", "flavor_id": flavor, "disk_image_id": image, "ssh_authorized_keys": [SSH_KEY]}]})
        assert api.wait_task(token, created["id"], BOOT)["status"] == "succeeded"
        api.ok("POST", "/qkd-networks", token, 201, json=NETWORK)
        start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
        api.own("POST", "/reservations", token, 201, json={"vcpus": 1, "ram_mib": 160, "starts_at": start.isoformat(),
                                                           "hours": 2})
        first = api.export(token)
        (vm,) = first["resources"]
        assert vm["flavor"]["flavor_type"] == "microvm" and vm["image"]["location"] == "default"
        assert vm["ssh_authorized_keys"] == [SSH_KEY] and [n["name"] for n in first["qkd_networks"]] == ["pair"]
        assert [(r["vcpus"], r["ram_mib"]) for r in first["reservations"]] == [(1, 160)]

        api.delete_everything(token, BOOT)
        assert host.vmm_pids() == {}  # the VM is gone from the host
        assert api.export(token) == {"schema_version": 1, "resources": [], "qkd_networks": [], "reservations": []}

        applied = api.apply(token, first, BOOT)
        assert sorted((s["kind"], s["action"]) for s in applied["plan"]["steps"]) == [
            ("qkd_network", "create"), ("reservation", "create"), ("resource", "create")]
        assert api.export(token) == first
        (resource,) = api.ok("GET", "/resources", token)
        assert resource["status"] == "running" and resource["access"]["ssh_host"] == host.address
        assert len(host.vmm_pids()) == 1  # booted again on the host
        assert api.plan(token, first)["steps"] == []
    finally:
        for resource in api.ok("GET", "/resources", token):
            api.wait_task(token, api.ok("DELETE", f"/resources/{resource['id']}", token, 202)["id"], BOOT)
        relay.close()
