"""End to end: the service (real PostgreSQL, BI API, worker) places a microVM on an agent that
registered itself from its own network namespace, and drives it: create, SSH port reachable,
pause, resume, delete, nothing left on the host. Also the agent's heartbeats and metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from slices_blueprint.agent.vmm.base import vmm_processes
from slices_blueprint.core.database import Database
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.hosts.local import enrol_local_host, start_local_agent
from slices_blueprint.resources.scheduled import reconcile
from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, some_certificate, wait_for
from tests.microvm.conftest import Relay, require_microvm_host
from tests.microvm.test_agent_lifecycle import assert_nothing_left, ssh_banner

pytestmark = pytest.mark.microvm



def enrol(http, service_url: str, admin: str, name: str) -> str:
    """A one-time enrolment token for host ``name``, issued by the admin over the API."""
    answer = http.post(f"{service_url}/api/v1/hosts/enrolments", json={"name": name},
                       headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


@pytest.fixture
def own_database(pg_admin_url: str):
    """A database of its own: no other test server's worker (with other keys and settings)
    may pick up this service's jobs."""
    with fresh_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def service(own_database: str, tmp_path: Path):
    settings = make_settings(tmp_path / "svc", own_database, free_port(), host_heartbeat_seconds=1,
                             dev_allowed_networks=["10.250.0.0/16"])  # agents reach it from their namespaces
    server = start_server(settings, own_database)
    yield server
    server.stop()


def microvm_catalog(api: Api, admin: str) -> tuple[str, str]:
    """A small microvm flavor (new) and the ``default`` image (found or created)."""
    flavor = api.ok("POST", "/flavors", admin, 201, json={
        "friendly_name": f"mv.tiny-{uuid.uuid4().hex[:6]}", "flavor_type": "microvm", "vcpus": 1,
        "ram_mib": 160, "disk_mb": 64})
    images = [i for i in api.ok("GET", "/disk-images", admin)
              if i["flavor_type"] == "microvm" and i["location"] == "default"]
    image = images[0] if images else api.ok("POST", "/disk-images", admin, 201, json={
        "friendly_name": "microvm-default", "flavor_type": "microvm", "location": "default",
        "default_username": "root"})
    return flavor["id"], image["id"]


def test_bi_api_microvm_on_a_registered_agent(service, http, make_host) -> None:
    api = Api(service, http)
    admin = api.token("admin")
    port = int(service.url.rsplit(":", 1)[1])
    relays: list[Relay] = []

    def make_registered_host():
        host = make_host.prepare()
        relays.append(Relay((host.gateway, port), ("127.0.0.1", port)))
        host.start_agent(service_url=f"http://{host.gateway}:{port}",
                         enrolment_token=enrol(http, service.url, admin, host.ns))
        return host

    try:
        host = make_registered_host()
        listed = wait_for(
            lambda: [h for h in api.http.get(f"{service.url}/api/v1/hosts",
                                              headers={"Authorization": f"Bearer {admin}"}).json()
                     if h["name"] == host.ns and h["metrics"]],
            30, "registration and a heartbeat",
        )[0]
        assert listed["status"] == "active" and listed["url"] == host.url and listed["resources"] == []
        assert listed["metrics"]["host"]["memory_total_bytes"] > 0

        flavor, image = microvm_catalog(api, admin)
        token = api.token("alice", "demo", "mvexp")
        task = api.create(token, ["mv1"], flavor, image,
                          {"ssh_authorized_keys": ["ssh-ed25519 AAAAC3Nza test@example"]})
        done = api.wait_task(token, task["id"], timeout=180)
        assert done["status"] == "succeeded", done
        (resource,) = api.ok("GET", "/resources", token)
        assert resource["status"] == "running", resource
        access = resource["access"]
        assert access["ssh_host"] == host.address and access["ssh_user"] == "root"
        assert (ssh_banner(host.address, access["ssh_port"]) or "").startswith("SSH-2.0-dropbear")

        rid = resource["id"]
        on_host = http.get(f"{service.url}/api/v1/hosts", headers={"Authorization": f"Bearer {admin}"}).json()
        assert [h["resources"] for h in on_host if h["name"] == host.ns] == [[rid]]  # what runs where
        busy = http.delete(f"{service.url}/api/v1/hosts/{listed['id']}", headers={"Authorization": f"Bearer {admin}"})
        assert busy.status_code == 409 and f"mv1 ({rid})" in busy.json()["detail"]  # not forgotten while busy
        assert_metrics_history(api, http, service.url, admin, token, rid,
                               some_certificate(host.data_dir.parent / "by-hand"))
        api.wait_task(token, api.ok("POST", f"/resources/{rid}/pause", token, 202)["id"])
        assert api.ok("GET", f"/resources/{rid}", token)["status"] == "paused"
        assert ssh_banner(host.address, access["ssh_port"], timeout=2) is None
        api.wait_task(token, api.ok("POST", f"/resources/{rid}/resume", token, 202)["id"])
        assert api.ok("GET", f"/resources/{rid}", token)["status"] == "running"
        assert (ssh_banner(host.address, access["ssh_port"]) or "").startswith("SSH-2.0")

        # stop powers the VM off (no VMM process), start boots the kept disk again
        api.wait_task(token, api.ok("POST", f"/resources/{rid}/stop", token, 202)["id"])
        assert api.ok("GET", f"/resources/{rid}", token)["status"] == "stopped"
        assert host.vmm_pids() == {} and ssh_banner(host.address, access["ssh_port"], timeout=2) is None
        started = api.wait_task(token, api.ok("POST", f"/resources/{rid}/start", token, 202)["id"],
                                timeout=180)
        assert started["status"] == "succeeded", started
        assert api.ok("GET", f"/resources/{rid}", token)["status"] == "running"
        assert (ssh_banner(host.address, access["ssh_port"]) or "").startswith("SSH-2.0")

        api.wait_task(token, api.ok("DELETE", f"/resources/{rid}", token, 202)["id"], timeout=60)
        assert_nothing_left(host, rid, access["ipv4"], access["ssh_port"])
        assert_leftover_vm_is_reaped(service, host, rid)

        # an agent refusal reaches the user as the resource's reason, naming the host
        bad_image = api.ok("POST", "/disk-images", admin, 201, json={
            "friendly_name": "microvm-missing", "flavor_type": "microvm", "location": "nope"})
        task = api.create(token, ["mv-bad"], flavor, bad_image["id"])
        assert api.wait_task(token, task["id"], timeout=60)["status"] == "failed"
        (bad,) = [r for r in api.ok("GET", "/resources", token) if r["friendly_name"] == "mv-bad"]
        assert bad["status"] == "error"
        assert f"host {host.ns}" in bad["status_reason"]
        assert "unknown image 'nope'" in bad["status_reason"], bad["status_reason"]
        assert host.vmm_pids() == {} and host.taps() == []

        hosts_url, auth = f"{service.url}/api/v1/hosts", {"Authorization": f"Bearer {admin}"}
        drained = http.post(f"{hosts_url}/{listed['id']}/drain", headers=auth).json()
        assert drained["status"] == "draining"
        assert http.delete(f"{hosts_url}/{listed['id']}", headers=auth).status_code == 204
        assert listed["id"] not in [h["id"] for h in http.get(hosts_url, headers=auth).json()]
        # the still-running agent is refused from now on: a removed host needs a new enrolment
        log = host.data_dir.parent / f"{host.ns}-agent.log"
        wait_for(lambda: "the service refused to register host" in log.read_text(), 30,
                 "the removed host's re-registration refused")
        assert host.ns not in [h["name"] for h in http.get(hosts_url, headers=auth).json()]
        host.kill_agent()
        host.start_agent(service_url=f"http://{host.gateway}:{port}",
                         enrolment_token=enrol(http, service.url, admin, host.ns))
        back = wait_for(lambda: [h for h in http.get(hosts_url, headers=auth).json()
                                 if h["name"] == host.ns], 30, "enrolment again")
        assert back[0]["id"] != listed["id"] and back[0]["status"] == "active"
        host.kill_agent()
        assert http.delete(f"{hosts_url}/{back[0]['id']}", headers=auth).status_code == 204
    finally:
        for relay in relays:
            relay.close()


def assert_leftover_vm_is_reaped(service, host, rid: str) -> None:
    """A VM a deleted resource left on its host (here made behind the service's back) is
    deleted by the reconciler: the host's quota does not leak."""
    with host.client() as agent:
        made = agent.post("/v1/vms", json={"id": rid, "name": "leftover", "vcpus": 1, "memory_mib": 128,
                                           "disk_mib": 64, "image": "default"})
        assert made.status_code == 201, made.text

    async def reconcile_now() -> dict[str, int]:
        db = Database(service.settings.database_url)
        try:
            settings = service.settings.model_copy(update={"orphan_grace_minutes": 0})
            return await reconcile(Runtime(settings=settings, db=db))
        finally:
            await db.dispose()

    assert asyncio.run(reconcile_now())["orphans_deleted"] == 1
    with host.client() as agent:
        assert agent.get(f"/v1/vms/{rid}").status_code == 404
    assert host.vmm_pids() == {}


def assert_metrics_history(api: Api, http, service_url: str, admin: str, token: str, rid: str,
                           cert_pem: str) -> None:
    """The agent's heartbeats (every second here) become the VM's metrics history; a host
    cannot report on a VM placed elsewhere."""
    def two_points():
        points = api.ok("GET", f"/resources/{rid}/metrics", token, params={"minutes": 5})["points"]
        return points if len(points) >= 2 else None

    latest = wait_for(two_points, 30, "two metric points")[-1]
    assert latest["cpu_percent"] >= 0 and latest["memory_mib"] > 20, latest
    assert latest["net_rx_bytes_per_s"] is not None and latest["disk_read_bytes_per_s"] is not None
    env = {**os.environ, "SLICES_BLUEPRINT_URL": service_url, "SLICES_BLUEPRINT_TOKEN": token,
           "COLUMNS": "200"}
    table = subprocess.run([sys.executable, "-m", "slices_blueprint", "metrics", rid], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert table.returncode == 0 and "cpu %" in table.stdout and "memory MiB" in table.stdout, table
    auth = {"Authorization": f"Bearer {admin}"}
    impostor = http.post(f"{service_url}/api/v1/hosts/register", headers=auth, json={
        "name": "impostor", "url": "https://impostor.invalid:8700", "token": "i" * 32,
        "cert_pem": cert_pem, "vcpus": 0, "memory_mib": 0, "disk_free_mib": 0}).json()["id"]
    claim = {"vcpus": 0, "memory_mib": 0, "disk_free_mib": 0, "metrics": {"vms": {
        rid: {"state": "running", "cpu_seconds": 1.0, "rss_bytes": 4242 * 2**20}}}}
    for _ in range(2):
        beat = http.post(f"{service_url}/api/v1/hosts/{impostor}/heartbeat", json=claim,
                         headers={"Authorization": "Bearer " + "i" * 32})
        assert beat.status_code == 200, beat.text
    points = api.ok("GET", f"/resources/{rid}/metrics", token, params={"minutes": 5})["points"]
    assert all(p["memory_mib"] != 4242.0 for p in points)
    assert http.delete(f"{service_url}/api/v1/hosts/{impostor}", headers=auth).status_code == 204


def test_local_host_for_serve_gives_a_microvm_with_ssh(own_database, http, tmp_path) -> None:
    """The newcomer's path: ``serve`` starts a local agent (user-mode networking, nothing
    changed in the machine's network) that registers itself; one BI call gives a microVM."""
    require_microvm_host()
    settings = make_settings(tmp_path / "svc", own_database, free_port())
    server = start_server(settings, own_database)
    agent = start_local_agent(settings, enrol_local_host(settings, own_database))
    api = Api(server, http)
    admin = api.token("admin")
    auth = {"Authorization": f"Bearer {admin}"}
    try:
        wait_for(lambda: any(h["name"] == "local" and h["status"] == "active" for h in http.get(
            f"{server.url}/api/v1/hosts", headers={"Authorization": f"Bearer {admin}"}).json()),
            30, "the local host registering")
        register = f"{server.url}/api/v1/hosts/register"
        body = {"name": "by-admin", "url": "https://by-admin.invalid:8700", "token": "x" * 32,
                "cert_pem": some_certificate(tmp_path / "by-admin"), "vcpus": 1, "memory_mib": 64,
                "disk_free_mib": 1}
        for bearer in ("wrong-secret", api.token("bob")):
            refused = http.post(register, json=body, headers={"Authorization": f"Bearer {bearer}"})
            assert refused.status_code in (401, 403), refused.text
        by_admin = http.post(register, json=body, headers={"Authorization": f"Bearer {admin}"})
        assert by_admin.status_code == 201, by_admin.text
        beat = http.post(f"{server.url}/api/v1/hosts/{by_admin.json()['id']}/heartbeat",
                         json={"vcpus": 1, "memory_mib": 64, "disk_free_mib": 1},
                         headers={"Authorization": "Bearer not-the-host-token"})
        assert beat.status_code == 401
        http.delete(f"{server.url}/api/v1/hosts/{by_admin.json()['id']}",
                    headers={"Authorization": f"Bearer {admin}"})

        flavor, image = microvm_catalog(api, admin)
        token = api.token("bob", "demo", "localexp")
        task = api.create(token, ["first"], flavor, image)
        assert api.wait_task(token, task["id"], timeout=180)["status"] == "succeeded"
        (resource,) = api.ok("GET", "/resources", token)
        access = resource["access"]
        assert access["ssh_host"] == "127.0.0.1"
        assert (ssh_banner("127.0.0.1", access["ssh_port"]) or "").startswith("SSH-2.0-dropbear")
        api.wait_task(token, api.ok("DELETE", f"/resources/{resource['id']}", token, 202)["id"])
        assert vmm_processes(tmp_path / "svc" / "agent" / "vms") == {}

        # serve started again: a fresh enrolment replaces the local host's identity in place
        (local,) = [h for h in http.get(f"{server.url}/api/v1/hosts", headers=auth).json()
                    if h["name"] == "local"]
        agent.terminate()
        agent.wait(10)
        agent = start_local_agent(settings, enrol_local_host(settings, own_database))
        wait_for(lambda: [h for h in http.get(f"{server.url}/api/v1/hosts", headers=auth).json()
                          if h["name"] == "local" and h["last_heartbeat_at"] > local["last_heartbeat_at"]
                          and h["id"] == local["id"]], 30, "the local host enrolling again")
    finally:
        agent.terminate()
        agent.wait(10)
        server.stop()


def test_a_microvm_created_before_the_local_host_registers_waits_for_it(own_database, http, tmp_path) -> None:
    """A script that created a microVM as soon as ``serve`` answered, before its local host
    registered: placement waits for the host that is expected (enrolled), then boots there.
    With no host registered or enrolled, the create fails at once, saying so."""
    require_microvm_host()
    settings = make_settings(tmp_path / "svc", own_database, free_port())
    server = start_server(settings, own_database)
    api = Api(server, http)
    agent = None
    try:
        flavor, image = microvm_catalog(api, api.token("admin"))
        token = api.token("bob", "demo", "too-early")
        clock = time.monotonic()
        nowhere = api.wait_task(token, api.create(token, ["nowhere"], flavor, image)["id"], timeout=30)
        assert nowhere["status"] == "failed" and "no microVM host is registered" in nowhere["error"]
        assert time.monotonic() - clock < 10

        enrolment = enrol_local_host(settings, own_database)  # as `serve` does before its agent starts
        task = api.create(token, ["early"], flavor, image)
        time.sleep(4)
        waiting = api.ok("GET", f"/tasks/{task['id']}", token)["subtasks"][0]
        assert waiting["status"] == "running" and "waiting for local" in waiting["message"], waiting
        agent = start_local_agent(settings, enrolment)
        done = api.wait_task(token, task["id"], timeout=180)
        assert done["status"] == "succeeded", done
        api.wait_task(token, api.ok("DELETE", f"/resources/{task['resource_ids'][0]}", token, 202)["id"])
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        server.stop()
