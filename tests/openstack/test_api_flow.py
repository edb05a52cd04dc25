"""The whole service with the OpenStack provider: real HTTP, PostgreSQL, queue and worker,
and the AIO cloud behind it; ``examples/request-resources.sh`` run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    LiveServer,
    free_port,
    fresh_database,
    integration_unavailable,
    make_settings,
    start_server,
)
from tests.helpers import Api
from tests.openstack.support import (
    AIO_CLOUD,
    AIO_CLOUDS_YAML,
    PREFIX,
    USER_PASSWORD,
    Cloud,
    in_cidr,
)

pytestmark = pytest.mark.openstack

EXAMPLE = Path(__file__).parents[2] / "examples" / "request-resources.sh"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9ubHktZm9yLXRlc3Rz flow@slices"


@pytest.fixture(scope="module")
def vm_service(
    cloud: Cloud, pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The service with only the ``vm`` provider, the AIO cloud as its site-wide cloud."""
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(
            tmp_path_factory.mktemp("sb-openstack"),
            url,
            free_port(),
            providers=["vm"],
            openstack_clouds_yaml=AIO_CLOUDS_YAML,
            openstack_cloud=AIO_CLOUD,
        )
        server = start_server(settings, url)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def api(vm_service: LiveServer) -> Iterator[Api]:
    with httpx.Client(timeout=30) as http:
        yield Api(vm_service, http)


@pytest.fixture(scope="module")
def catalog(api: Api, cloud: Cloud) -> tuple[str, str]:
    """The test flavor and image offered through the API; their friendly names."""
    admin = api.token("admin")
    common = {"flavor_type": "vm", "cluster_id": AIO_CLOUD}
    flavor = api.ok("POST", "/flavors", admin, 201, json={
        **common, "friendly_name": f"{PREFIX}-api-flavor", "vcpus": 1, "ram_mib": 64,
        "disk_mb": 1024, "provider_ref": cloud.flavor_id,
    })  # fmt: skip
    image = api.ok("POST", "/disk-images", admin, 201, json={
        **common, "friendly_name": f"{PREFIX}-api-image", "location": cloud.image_id,
        "default_username": "debian",
    })  # fmt: skip
    return flavor["friendly_name"], image["friendly_name"]


def test_example_script_creates_reaches_and_deletes_a_vm(
    cloud: Cloud, vm_service: LiveServer, catalog: tuple[str, str], tmp_path: Path
) -> None:
    if shutil.which("jq") is None:
        integration_unavailable("the example needs jq (listed in .ci/apt-openstack.txt)")
    key_file = tmp_path / "id_test.pub"
    key_file.write_text(SSH_KEY + "\n")
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SLICES_BLUEPRINT_URL": vm_service.url,
        "FLAVOR": catalog[0],
        "IMAGE": catalog[1],
        "NETWORK": cloud.network_name,
        "NAME": f"{PREFIX}-example",
        "SSH_KEY_FILE": str(key_file),
        "PUBLIC_IPV4": "1",
    }
    run = subprocess.run(
        ["bash", str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr

    ssh_line = next(line for line in run.stdout.splitlines() if line.startswith("ssh: "))
    user_host = ssh_line.split()[-1]
    assert ssh_line.startswith("ssh: ssh -p 22 debian@")
    assert in_cidr(cloud.external_cidr, user_host.split("@")[1])
    assert "succeeded 100%" in run.stderr and "deleted: deleted" in run.stderr
    resource_id = run.stderr.split(" as ", 1)[1].split()[0]
    assert cloud.servers_of(resource_id) == []  # nothing left running
    assert list(cloud.admin.network.ips(floating_ip_address=user_host.split("@")[1])) == []


def test_unknown_network_leaves_the_resource_in_error_with_a_reason(
    api: Api, catalog: tuple[str, str], cloud: Cloud
) -> None:
    flavors = api.ok("GET", "/flavors", api.token("alice"))
    images = api.ok("GET", "/disk-images", api.token("alice"))
    flavor = next(f["id"] for f in flavors if f["friendly_name"] == catalog[0])
    image = next(i["id"] for i in images if i["friendly_name"] == catalog[1])
    token = api.token("alice", "demo", f"exp-{uuid.uuid4().hex[:6]}")
    resource = {
        "friendly_name": f"{PREFIX}-nonet",
        "flavor_id": flavor,
        "disk_image_id": image,
        "network_interfaces": ["no-such-net"],
    }
    body = {"request_id": str(uuid.uuid4()), "resources": [resource]}
    task = api.ok("POST", "/resources", token, 202, json=body)
    assert api.wait_task(token, task["id"], timeout=120)["status"] == "failed"
    resource = api.ok("GET", f"/resources/{task['resource_ids'][0]}", token)
    assert resource["status"] == "error"
    assert "network 'no-such-net' does not exist" in resource["status_reason"]
    assert cloud.servers_of(task["resource_ids"][0]) == []


def test_uploaded_clouds_yaml_is_checked_and_then_used_for_the_users_vms(
    api: Api, vm_service: LiveServer, catalog: tuple[str, str], cloud: Cloud
) -> None:
    user = f"bob{uuid.uuid4().hex[:6]}"
    user_token = api.token(user, "demo")
    url = f"{vm_service.url}/api/v1/credentials/openstack"
    headers = {"Authorization": f"Bearer {user_token}"}
    wrong = cloud.project_clouds_yaml.decode().replace(USER_PASSWORD, "not-the-password")
    refused = api.http.put(url, headers=headers, json={"content": wrong})
    assert refused.status_code == 422, refused.text
    assert "HTTP 401" in refused.json()["detail"] and "not-the-password" not in refused.text

    stored = api.http.put(
        url, headers=headers, json={"content": cloud.project_clouds_yaml.decode()}
    )
    assert stored.status_code == 200, stored.text
    assert (stored.json()["selected"], stored.json()["last_check_ok"]) == ("throwaway", True)
    listed = api.http.get(f"{vm_service.url}/api/v1/credentials", headers=headers)
    assert USER_PASSWORD not in listed.text and "content" not in listed.text

    flavors = api.ok("GET", "/flavors", user_token)
    images = api.ok("GET", "/disk-images", user_token)
    resource = {
        "friendly_name": f"{PREFIX}-own-cloud",
        "flavor_id": next(f["id"] for f in flavors if f["friendly_name"] == catalog[0]),
        "disk_image_id": next(i["id"] for i in images if i["friendly_name"] == catalog[1]),
    }
    body = {
        "request_id": str(uuid.uuid4()),
        "resources": [resource],
        "tokens": [{"jwt": user_token}],
    }
    token = api.token(user, "demo", f"exp-{uuid.uuid4().hex[:6]}")
    task = api.ok("POST", "/resources", token, 202, json=body)
    assert api.wait_task(token, task["id"], timeout=180)["status"] == "succeeded"
    rid = task["resource_ids"][0]
    created = api.ok("GET", f"/resources/{rid}", token)
    server = cloud.admin.compute.get_server(created["provider_resource_id"])
    assert server.project_id == cloud.project_id  # the user's project, not the site's admin one

    deleting = api.ok("DELETE", f"/resources/{rid}", token, 202)
    assert api.wait_task(token, deleting["id"], timeout=180)["status"] == "succeeded"
    assert cloud.servers_of(rid) == []


def test_admin_catalog_sync_imports_the_site_cloud(
    api: Api, vm_service: LiveServer, cloud: Cloud
) -> None:
    """The site's cloud is imported at start by the periodic job too, so a flavor made just
    now shows what one sync adds, and what the next one hides once it is gone."""
    url = f"{vm_service.url}/api/v1/catalog/sync"
    headers = {"Authorization": f"Bearer {api.token('admin')}"}

    def sync() -> dict:
        answer = api.http.post(url, headers=headers, json={"flavor_type": "vm"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["cluster_id"] == "site"
        return answer.json()

    sync()
    fresh = cloud.admin.compute.create_flavor(name=f"{PREFIX}-fresh", vcpus=2, ram=96, disk=3)
    try:
        added = sync()
        assert (added["added"], added["updated"], added["hidden"]) == (
            [f"flavor:{fresh.name}"],
            [],
            [],
        )
        assert sync()["added"] == []
    finally:
        cloud.admin.compute.delete_flavor(fresh)
    assert sync()["hidden"] == [f"flavor:{fresh.name}"]
    flavors = api.ok("GET", "/flavors?include_hidden=true", api.token("admin"))
    row = next(f for f in flavors if f["provider_ref"] == fresh.id)
    assert (row["source"], row["hidden"], row["vcpus"], row["ram_mib"], row["disk_mb"]) == (
        "sync",
        True,
        2,
        96,
        3072,
    )
