"""Servers through our driver against the real nova/neutron/glance of the AIO cloud."""

from __future__ import annotations

import asyncio
import base64
import secrets

import pytest

from slices_blueprint.providers.base import GuestFile, ManagedNode, ProviderError
from slices_blueprint.providers.openstack.driver import (
    MANAGED_TAG,
    META_RESOURCE,
    BuildLost,
    OpenStackDriver,
)
from tests.openstack.support import Cloud, Recorder, in_cidr

pytestmark = pytest.mark.openstack

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9ubHktZm9yLXRlc3Rz test@slices"


async def test_create_status_reset_delete(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec(ssh_authorized_keys=[SSH_KEY], userdata="#!/bin/sh\necho hello-slices\n",
                      files=(GuestFile("/etc/qkd/app/sae.key", "KEY-TEXT", 0o600),))
    info = await driver.create(spec, progress)

    assert info.state == "running"
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100
    assert len(progress.calls) >= 3
    assert in_cidr(cloud.subnet_cidr, info.access["ipv4"])
    assert info.access["ssh_user"] == "debian" and info.access["ssh_port"] == 22
    assert info.access["addresses"] == {cloud.network_name: [info.access["ipv4"]]}

    server = cloud.admin.compute.get_server(info.provider_resource_id)
    assert server.status == "ACTIVE" and server.image["id"] == cloud.image_id
    assert server.metadata[META_RESOURCE] == spec.resource_id
    assert server.metadata["slices_experiment_id"] == spec.experiment_id
    assert server.metadata["slices_project_id"] == spec.project_id
    assert MANAGED_TAG in server.tags
    userdata = base64.b64decode(server.user_data).decode()
    assert "echo hello-slices" in userdata and SSH_KEY in userdata
    assert "Content-Type: text/cloud-config" in userdata and "Merge-Type: list(append)" in userdata
    assert "path: /etc/qkd/app/sae.key" in userdata and "permissions: '0600'" in userdata

    status = await driver.status(info.provider_resource_id)
    assert (status.state, status.access["ipv4"]) == ("running", info.access["ipv4"])

    reset_progress = Recorder()
    reset = await driver.reset(info.provider_resource_id, spec, reset_progress)
    assert reset.state == "running" and reset_progress.percents[-1] == 100
    actions = [a.action for a in cloud.admin.compute.server_actions(info.provider_resource_id)]
    assert "rebuild" in actions
    rebuilt = base64.b64decode(cloud.admin.compute.get_server(info.provider_resource_id).user_data).decode()
    assert "path: /etc/qkd/app/sae.key" in rebuilt  # the rebuild got the files again

    delete_progress = Recorder()
    await driver.delete(info.provider_resource_id, delete_progress)
    assert delete_progress.percents[-1] == 100
    assert (await driver.status(info.provider_resource_id)).state == "gone"
    assert cloud.servers_of(spec.resource_id) == []
    await driver.delete(info.provider_resource_id, Recorder())  # already gone: success


async def test_pause_resume_stop_start_through_nova(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec()
    info = await driver.create(spec, progress)
    server_id = info.provider_resource_id
    try:
        for verb, state, nova_status, nova_action in (
            ("pause", "paused", "PAUSED", "pause"), ("resume", "running", "ACTIVE", "unpause"),
            ("stop", "stopped", "SHUTOFF", "stop"), ("start", "running", "ACTIVE", "start"),
        ):
            answer = await getattr(driver, verb)(server_id)
            assert answer.state == state, verb
            server = cloud.admin.compute.get_server(server_id)
            assert (server.status, server.task_state) == (nova_status, None), verb
            actions = [a.action for a in cloud.admin.compute.server_actions(server_id)]
            assert nova_action in actions, (verb, actions)
        assert (await driver.status(server_id)).state == "running"
        await driver.stop(server_id)  # a reset of a stopped server ends running
        reset = await driver.reset(server_id, spec, Recorder())
        assert reset.state == "running"
        assert cloud.admin.compute.get_server(server_id).status == "ACTIVE"
    finally:
        await driver.delete(server_id, Recorder())


async def test_repeated_create_adopts_the_server(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec()
    first = await driver.create(spec, progress)
    again = Recorder()
    second = await driver.create(spec, again)
    try:
        assert second.provider_resource_id == first.provider_resource_id
        assert [s.id for s in cloud.servers_of(spec.resource_id)] == [first.provider_resource_id]
        assert any("adopted" in message for _, message in again.calls)
    finally:
        await driver.delete(first.provider_resource_id, Recorder())


async def test_flavor_is_picked_by_size_when_no_ref_is_given(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec(flavor_ref=None, vcpus=3, ram_mib=77, disk_mb=1024)
    sized = cloud.admin.compute.create_flavor(name=f"{spec.name}-3x77", vcpus=3, ram=77, disk=1)
    try:
        info = await driver.create(spec, progress)
        server = cloud.admin.compute.get_server(info.provider_resource_id)
        assert server.flavor["original_name"] == sized.name
        await driver.delete(info.provider_resource_id, Recorder())
    finally:
        cloud.admin.compute.delete_flavor(sized)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"flavor_ref": "no-such-flavor"}, "flavor 'no-such-flavor' does not exist"),
        (
            {"flavor_ref": None, "vcpus": 97, "ram_mib": 13},
            "no flavor on this cloud has exactly 97",
        ),
        ({"image_location": "no-such-image"}, "image 'no-such-image' does not exist"),
        ({"network_interfaces": ["no-such-net"]}, "network 'no-such-net' does not exist"),
    ],
)
async def test_unknown_references_are_refused_before_booting(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder, override: dict, message: str
) -> None:
    spec = cloud.spec(**override)
    with pytest.raises(ProviderError, match=message):
        await driver.create(spec, progress)
    assert cloud.servers_of(spec.resource_id) == []


async def test_error_server_reports_nova_fault_and_is_removed(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec(flavor_ref=cloud.error_flavor_id)
    with pytest.raises(ProviderError, match="the server failed: No valid host was found"):
        await driver.create(spec, progress)
    assert progress.percents, "the server was created before it failed"
    assert cloud.servers_of(spec.resource_id) == []


async def test_boot_timeout_removes_the_server(cloud: Cloud, driver: OpenStackDriver) -> None:
    """A 10 ms budget: the first look at the new server normally finds it still building.

    The fake driver can finish before that first look when nova is slow to answer; such an
    attempt is undone and tried again, so the test needs one attempt that really timed out.
    """
    driver.boot_timeout_s = 0.01
    for _ in range(5):
        spec = cloud.spec()
        try:
            info = await driver.create(spec, Recorder())
        except ProviderError as exc:
            assert "did not become ACTIVE within 0.01 s (still build" in str(exc)
            assert cloud.servers_of(spec.resource_id) == []
            return
        await driver.delete(info.provider_resource_id, Recorder())
    pytest.fail("every server was ACTIVE at its first look: the timeout path never ran")


async def test_quota_exceeded_is_explained(
    cloud: Cloud, project_driver: OpenStackDriver, progress: Recorder
) -> None:
    before = cloud.admin.compute.get_quota_set(cloud.project_id).instances
    cloud.admin.compute.update_quota_set(cloud.project_id, instances=0)
    try:
        spec = cloud.spec(network_interfaces=[])
        with pytest.raises(ProviderError, match="quota exceeded .*[Qq]uota exceeded for instances"):
            await project_driver.create(spec, progress)
    finally:
        cloud.admin.compute.update_quota_set(cloud.project_id, instances=before)
    assert cloud.admin.compute.get_quota_set(cloud.project_id).instances == before
    assert cloud.servers_of(spec.resource_id) == []


async def test_default_network_is_the_projects_only_one(
    cloud: Cloud, project_driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec(network_interfaces=[])
    info = await project_driver.create(spec, progress)  # the project has no network yet
    assert info.access["addresses"] == {} and info.access["ipv4"] is None
    await project_driver.delete(info.provider_resource_id, Recorder())

    admin = cloud.admin.network
    nets = []
    try:
        for n in range(2):
            net = admin.create_network(name=f"{spec.name}-own{n}", project_id=cloud.project_id)
            nets.append(net)
            cidr = f"10.77.{secrets.randbelow(250)}.0/24"
            admin.create_subnet(
                network_id=net.id, ip_version=4, cidr=cidr, project_id=cloud.project_id
            )
            if n == 0:
                spec = cloud.spec(network_interfaces=[])
                info = await project_driver.create(spec, Recorder())
                assert list(info.access["addresses"]) == [net.name]
                assert in_cidr(cidr, info.access["ipv4"])
                await project_driver.delete(info.provider_resource_id, Recorder())
        spec = cloud.spec(network_interfaces=[])
        with pytest.raises(ProviderError, match="several networks .*-own0, .*-own1.*: name one"):
            await project_driver.create(spec, Recorder())
    finally:
        for net in nets:
            admin.delete_network(net)


@pytest.mark.parametrize("named", [False, True])
async def test_public_ipv4_gets_a_floating_ip_released_on_delete(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder, named: bool
) -> None:
    config = {"floating_network": cloud.external_network_name} if named else {}
    spec = cloud.spec(public_ipv4=True, config=config)
    info = await driver.create(spec, progress)
    floating = info.access["floating_ip"]
    assert in_cidr(cloud.external_cidr, floating) and info.access["ipv4"] == floating
    assert info.access["ssh_host"] == floating
    ips = list(cloud.admin.network.ips(floating_ip_address=floating))
    assert len(ips) == 1 and spec.resource_id in ips[0].description
    assert (await driver.status(info.provider_resource_id)).access["floating_ip"] == floating

    await driver.delete(info.provider_resource_id, Recorder())
    assert list(cloud.admin.network.ips(floating_ip_address=floating)) == []


async def test_failed_floating_ip_removes_the_booted_server(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    spec = cloud.spec(public_ipv4=True, config={"floating_network": "no-such-external"})
    with pytest.raises(ProviderError, match="needs external network 'no-such-external'"):
        await driver.create(spec, progress)
    assert 30 in progress.percents, "the server was booted before the floating IP failed"
    assert cloud.servers_of(spec.resource_id) == []


async def test_list_managed_finds_an_orphan(cloud: Cloud, driver: OpenStackDriver) -> None:
    orphan_id = cloud.spec().resource_id
    common = {"image_id": cloud.image_id, "flavor_id": cloud.flavor_id, "networks": "none"}
    orphan = cloud.admin.compute.create_server(
        name=f"{cloud.spec().name}-orphan",
        metadata={META_RESOURCE: orphan_id},
        tags=[MANAGED_TAG],
        **common,
    )
    foreign = cloud.admin.compute.create_server(name=f"{cloud.spec().name}-foreign", **common)
    try:
        cloud.admin.compute.wait_for_server(orphan, interval=1, wait=120)
        managed = await driver.list_managed()
        assert ManagedNode(orphan.id, orphan_id, "running") in managed
        assert foreign.id not in {node.provider_resource_id for node in managed}
    finally:
        for server in (orphan, foreign):
            await driver.delete(server.id, Recorder())


async def test_catalog_lists_the_test_image_and_flavor(
    cloud: Cloud, driver: OpenStackDriver
) -> None:
    catalog = await driver.catalog()
    flavor = next(f for f in catalog.flavors if f.provider_ref == cloud.flavor_id)
    assert (flavor.name, flavor.vcpus, flavor.ram_mib, flavor.disk_mb) == (
        cloud.flavor_name,
        1,
        64,
        1024,
    )
    image = next(i for i in catalog.images if i.location == cloud.image_id)
    assert (image.default_username, image.min_disk_mb, image.min_ram_mib) == ("debian", 1024, 32)


async def test_server_nova_lost_while_building_is_replaced(
    cloud: Cloud, driver: OpenStackDriver, progress: Recorder
) -> None:
    """Nova sets the servers its compute service was building when it stopped to ERROR
    without a fault (reset-state does the same): create deletes such a server and raises a
    transient error, so the retry boots a new one; an ERROR server an earlier attempt could
    not delete is deleted by the next attempt, not adopted."""
    spec = cloud.spec()
    lost: list[str] = []

    def set_error_once_built() -> None:
        (server,) = cloud.servers_of(spec.resource_id)
        cloud.admin.compute.wait_for_server(server, status="ACTIVE", interval=0.5, wait=60)
        cloud.admin.compute.reset_server_state(server, "error")  # before the driver looks again
        lost.append(server.id)

    async def lose_it(pct: int, message: str) -> None:
        if pct == 30 and not lost:  # the server was requested
            await asyncio.to_thread(set_error_once_built)

    try:
        with pytest.raises(BuildLost, match="ERROR without a fault"):
            await driver.create(spec, lose_it)
        assert lost and cloud.servers_of(spec.resource_id) == []
        retried = await driver.create(spec, progress)
        assert retried.state == "running" and retried.provider_resource_id != lost[0]

        cloud.admin.compute.reset_server_state(retried.provider_resource_id, "error")
        replaced = await driver.create(spec, Recorder())
        assert replaced.state == "running"
        assert replaced.provider_resource_id != retried.provider_resource_id
        assert [s.id for s in cloud.servers_of(spec.resource_id)] == [replaced.provider_resource_id]
    finally:
        for server in cloud.servers_of(spec.resource_id):
            await driver.delete(server.id, Recorder())
