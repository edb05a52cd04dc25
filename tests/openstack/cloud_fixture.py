"""The session's real AIO cloud (``cloud``), registered once for the whole suite (a pytest
plugin of ``tests/conftest.py``) so the OpenStack tests and the fault tests share one set of
test objects: an image, flavors, networks with a router, a throwaway project and its user,
all carrying the session's random suffix and removed at the end."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import keystoneauth1.exceptions as ks_exc
import openstack.exceptions as os_exc
import pytest
import yaml
from openstack.connection import Connection

from slices_blueprint.providers.openstack.driver import META_RESOURCE
from tests.openstack.support import (
    AIO_CLOUD,
    AIO_CLOUDS_YAML,
    PREFIX,
    SUFFIX,
    USER_PASSWORD,
    Cloud,
    admin_connection,
    project_clouds_yaml,
)


class Cleanup:
    """Undo steps run in reverse order, each one allowed to fail (already gone)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, fn: Callable[[], object]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        failures = []
        for what, fn in reversed(self.steps):
            try:
                fn()
            except (ks_exc.ClientException, os_exc.SDKException) as exc:  # report, go on
                failures.append(f"{what}: {exc}")
        return failures


def _delete_tagged_servers(admin: Connection) -> None:
    servers = [
        s
        for s in admin.compute.servers(details=True, all_projects=True)
        if SUFFIX in (s.metadata or {}).get(META_RESOURCE, "") or s.name.startswith(PREFIX)
    ]
    for server in servers:
        for port in admin.network.ports(device_id=server.id):
            for ip in admin.network.ips(port_id=port.id):
                admin.network.delete_ip(ip)
        admin.compute.delete_server(server, ignore_missing=True)
    for server in servers:
        admin.compute.wait_for_delete(server, interval=1, wait=120)


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    admin = admin_connection()
    cleanup = Cleanup()
    cleanup.add("tagged servers", lambda: _delete_tagged_servers(admin))
    auth_url = yaml.safe_load(AIO_CLOUDS_YAML.read_bytes())["clouds"][AIO_CLOUD]["auth"]["auth_url"]
    try:
        image = admin.image.create_image(
            f"{PREFIX}-img",
            data=b"slices-blueprint test image",
            disk_format="raw",
            container_format="bare",
            visibility="public",
            os_admin_user="debian",
            min_disk=1,
            min_ram=32,
            wait=True,
        )
        cleanup.add("image", lambda: admin.image.delete_image(image, ignore_missing=True))
        flavor = admin.compute.create_flavor(name=f"{PREFIX}-flv", vcpus=1, ram=64, disk=1)
        cleanup.add("flavor", lambda: admin.compute.delete_flavor(flavor, ignore_missing=True))
        bad = admin.compute.create_flavor(name=f"{PREFIX}-novalidhost", vcpus=1, ram=64, disk=1)
        cleanup.add("error flavor", lambda: admin.compute.delete_flavor(bad, ignore_missing=True))
        # no compute node has this trait: the scheduler finds no host, nova sets ERROR
        admin.compute.create_flavor_extra_specs(bad, {"trait:CUSTOM_SBT_NEVER": "required"})

        net = admin.network.create_network(name=f"{PREFIX}-net")
        cleanup.add("network", lambda: admin.network.delete_network(net, ignore_missing=True))
        subnet_cidr = f"10.{100 + secrets.randbelow(100)}.{secrets.randbelow(250)}.0/24"
        subnet = admin.network.create_subnet(
            network_id=net.id, ip_version=4, cidr=subnet_cidr, name=f"{PREFIX}-subnet"
        )
        ext = admin.network.create_network(
            name=f"{PREFIX}-ext",
            is_router_external=True,
            provider_network_type="flat",
            provider_physical_network=f"ext{SUFFIX}",
        )
        cleanup.add(
            "external network", lambda: admin.network.delete_network(ext, ignore_missing=True)
        )
        external_cidr = f"198.18.{secrets.randbelow(250)}.0/24"
        admin.network.create_subnet(
            network_id=ext.id,
            ip_version=4,
            cidr=external_cidr,
            name=f"{PREFIX}-ext-subnet",
            is_dhcp_enabled=False,
        )
        router = admin.network.create_router(
            name=f"{PREFIX}-router", external_gateway_info={"network_id": ext.id}
        )
        cleanup.add("router", lambda: admin.network.delete_router(router, ignore_missing=True))
        admin.network.add_interface_to_router(router, subnet=subnet.id)
        cleanup.add(
            "router interface",
            lambda: admin.network.remove_interface_from_router(router, subnet=subnet.id),
        )

        project = admin.identity.create_project(name=f"{PREFIX}-proj", domain_id="default")
        cleanup.add("project", lambda: admin.identity.delete_project(project, ignore_missing=True))
        user = admin.identity.create_user(
            name=f"{PREFIX}-user",
            password=USER_PASSWORD,
            domain_id="default",
            default_project_id=project.id,
        )
        cleanup.add("user", lambda: admin.identity.delete_user(user, ignore_missing=True))
        member = admin.identity.find_role("member", ignore_missing=False)
        admin.identity.assign_project_role_to_user(project, user, member)

        yield Cloud(
            admin=admin,
            clouds_yaml=AIO_CLOUDS_YAML.read_bytes(),
            auth_url=auth_url,
            image_id=image.id,
            image_name=image.name,
            flavor_id=flavor.id,
            flavor_name=flavor.name,
            error_flavor_id=bad.id,
            network_name=net.name,
            subnet_cidr=subnet_cidr,
            external_cidr=external_cidr,
            external_network_name=ext.name,
            project_id=project.id,
            project_clouds_yaml=project_clouds_yaml(auth_url, project.name, user.name),
        )
    finally:
        failures = cleanup.run()
        admin.close()
        assert not failures, f"cleanup left things behind: {failures}"
