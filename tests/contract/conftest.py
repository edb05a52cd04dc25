"""One driver-contract subject per provider, each on its real component: the test double's
files, the AIO OpenStack cloud, the Kubernetes test control plane, a real agent booting QEMU
microVMs in a network namespace. Providers whose component does not run here skip (or fail
under ``SLICES_BLUEPRINT_REQUIRE_INTEGRATION=1``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from slices_blueprint.agent.protocol import HostRegistration, HostView
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.hosts import service as hosts
from slices_blueprint.providers.base import ComputeDriver, NodeSpec
from slices_blueprint.providers.microvm.driver import MicroVMDriver
from slices_blueprint.providers.openstack.driver import OpenStackDriver
from slices_blueprint.providers.test_double.driver import TestDoubleDriver
from tests.conftest import LOOPBACK_ALLOWED, free_port, fresh_database, make_settings
from tests.kubernetes.conftest import make_spec, new_driver  # noqa: F401 (fixtures)
from tests.microvm.conftest import make_host  # noqa: F401 (a fixture)
from tests.openstack.cloud_fixture import Cleanup
from tests.openstack.support import (
    AIO_CLOUD,
    AIO_CLOUDS_YAML,
    PREFIX,
    SUFFIX,
    admin_connection,
)


@dataclass
class Subject:
    """A driver on its real component, and a spec it can create."""

    driver: ComputeDriver
    spec: NodeSpec


def _spec(resource_id: str, **fields: object) -> NodeSpec:
    values: dict[str, object] = {
        "resource_id": resource_id, "name": "contract", "experiment_id": "exp_test-site1_contract",
        "project_id": "proj_test-site1_contract", "image_location": "default",
        "image_default_username": "root", "flavor_ref": None, "vcpus": 1, "ram_mib": 256,
        "disk_mb": 512,
    }
    return NodeSpec(**(values | fields))


@pytest.fixture(params=[
    "test_double",
    pytest.param("openstack", marks=pytest.mark.openstack),
    pytest.param("kubernetes", marks=pytest.mark.kubernetes),
    pytest.param("microvm", marks=pytest.mark.microvm),
])
def subject(request: pytest.FixtureRequest) -> Subject:
    return request.getfixturevalue(f"{request.param}_subject")


@pytest.fixture
def test_double_subject(tmp_path: Path) -> Subject:
    return Subject(TestDoubleDriver(tmp_path / "test-double"),
                   _spec(f"resource_test-site1_{secrets.token_hex(8)}"))


@pytest.fixture
async def openstack_subject() -> AsyncIterator[Subject]:
    """The AIO cloud as its admin, with an image, a flavor and a network of this test's own
    (named apart from the openstack tests' session cloud, removed afterwards)."""
    admin = admin_connection()
    cleanup = Cleanup()
    name = f"{PREFIX}-contract"
    try:
        image = admin.image.create_image(f"{name}-img", data=b"contract", disk_format="raw",
                                         container_format="bare", min_disk=1, wait=True)
        cleanup.add("image", lambda: admin.image.delete_image(image, ignore_missing=True))
        flavor = admin.compute.create_flavor(name=f"{name}-flv", vcpus=1, ram=64, disk=1)
        cleanup.add("flavor", lambda: admin.compute.delete_flavor(flavor, ignore_missing=True))
        net = admin.network.create_network(name=f"{name}-net")
        cleanup.add("network", lambda: admin.network.delete_network(net, ignore_missing=True))
        admin.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.99.77.0/24")
        settings = Settings(uploaded_endpoints_allowed=LOOPBACK_ALLOWED)
        driver = OpenStackDriver.from_settings(settings, AIO_CLOUDS_YAML.read_bytes(), AIO_CLOUD)
        try:
            yield Subject(driver, _spec(f"res_test-os_{SUFFIX}{secrets.token_hex(8)}",
                                        image_location=image.id, flavor_ref=flavor.id, ram_mib=64,
                                        disk_mb=1024, network_interfaces=[net.name]))
        finally:
            await driver.close()
    finally:
        failures = cleanup.run()
        admin.close()
        assert not failures, f"cleanup left things behind: {failures}"


@pytest.fixture
def kubernetes_subject(new_driver: Callable, make_spec: Callable) -> Subject:  # noqa: F811
    """The test control plane through the operator's kubeconfig (the hollow node offers 1
    CPU: a request of 10m per vCPU)."""
    driver = new_driver(ready_timeout=60.0, unschedulable_grace=2.0, delete_grace=0,
                        cpu_request_fraction=0.01)
    return Subject(driver, make_spec(name="contract"))


@pytest.fixture
async def microvm_subject(make_host: Callable, pg_admin_url: str,  # noqa: F811
                          tmp_path: Path) -> AsyncIterator[Subject]:
    """A real agent in a network namespace, registered in a database of its own with the
    capacity it reports (:class:`HostView`), driven by the microVM driver on that database."""
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(tmp_path / "svc", url, free_port())
        host = make_host()
        with host.client() as client:
            view = HostView.model_validate(client.get("/v1/host").raise_for_status().json())
        db = Database(url, pool_size=2)
        try:
            async with db.session() as session:
                await hosts.register(session, settings, HostRegistration(
                    name=host.ns, url=host.url, token=host.token,
                    cert_pem=(host.data_dir / "tls" / "cert.pem").read_text(),
                    vcpus=view.vcpus, memory_mib=view.memory_mib,
                    disk_free_mib=view.disk_free_mib, network_mode=view.network_mode))
            yield Subject(MicroVMDriver.from_settings(settings, None, None, db=db),
                          _spec(f"resource_test-site1_{secrets.token_hex(8)}"))
        finally:
            await db.dispose()

