"""Host bookkeeping against real PostgreSQL: placement spreads load and respects capacity
(vCPUs, memory, disk, capacity held for others), drained and silent hosts get no VMs, missed heartbeats mark a host lost; the microVM driver's
errors say what is wrong and where."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from slices_blueprint.agent.protocol import Heartbeat, HostRegistration
from slices_blueprint.core.database import Database
from slices_blueprint.core.models import utcnow
from slices_blueprint.hosts import service
from slices_blueprint.hosts.models import Host, HostBooking, HostEnrolment
from slices_blueprint.providers.base import (
    AwaitingPlacement,
    NodeSpec,
    ProviderError,
    TransientProviderError,
)
from slices_blueprint.providers.microvm.driver import MicroVMDriver
from tests.conftest import make_settings
from tests.helpers import some_certificate


@pytest.fixture
async def db(database_url: str):
    database = Database(database_url, pool_size=2)
    async with database.session() as session:
        await session.execute(delete(Host))
        await session.execute(delete(HostEnrolment))
    yield database
    async with database.session() as session:
        await session.execute(delete(Host))
        await session.execute(delete(HostEnrolment))
    await database.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str):
    return make_settings(tmp_path, database_url, 1, host_lost_after_seconds=30)


@pytest.fixture(scope="module")
def cert_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An agent certificate (as an agent makes its own)."""
    return some_certificate(tmp_path_factory.mktemp("agent-tls"))


@pytest.fixture
def registration(cert_pem: str):
    def make(name: str, vcpus: int, memory_mib: int, url: str | None = None) -> HostRegistration:
        return HostRegistration(name=name, url=url or f"https://{name}.invalid:8700",
                                token="t" * 32, cert_pem=cert_pem, vcpus=vcpus,
                                memory_mib=memory_mib, disk_free_mib=10_000)
    return make


async def test_placement_spreads_load_and_respects_capacity(db, settings, registration) -> None:
    async with db.session() as session:
        await service.register(session, settings, registration("small", 4, 1024))
        await service.register(session, settings, registration("big", 4, 2048))
        drained = await service.register(session, settings, registration("drained", 64, 65536))
        drained.status = service.DRAINING
        silent = await service.register(session, settings, registration("silent", 64, 65536))
        silent.last_heartbeat_at = utcnow() - dt.timedelta(minutes=5)
    placed = []
    for n in range(4):
        async with db.session() as session:
            placed.append((await service.place(session, settings, f"vm-{n}", 1, 512)).name)
    # most memory left after placing wins; ties go to the host running fewer VMs
    assert placed == ["big", "big", "small", "big"]
    async with db.session() as session:
        for n in range(4, 6):  # the last 512 MiB on each
            await service.place(session, settings, f"vm-{n}", 1, 512)
        with pytest.raises(service.NoCapacity) as refused:
            await service.place(session, settings, "vm-6", 1, 512)
    assert refused.value.hosts_known and "2 usable of 4 registered" in str(refused.value)


async def test_placement_needs_room_on_disk_and_says_so_when_no_host_has_it(
        db, settings, registration, database_url: str) -> None:
    async with db.session() as session:
        full = await service.register(session, settings, registration("full", 8, 8192))
        full.disk_free_mib = 100  # its data directory almost full: the VM's disk would not fit
        await service.register(session, settings, registration("roomy", 2, 1024))
    for n in range(2):  # the host with the most memory left is full: the other one gets them
        async with db.session() as session:
            assert (await service.place(session, settings, f"vm-{n}", 1, 256, disk_mib=512)).name == "roomy"
    async with db.session() as session:
        assert (await service.place(session, settings, "vm-small", 1, 256, disk_mib=36)).name == "full"
        await service.release(session, "vm-small")
    driver = MicroVMDriver(settings, Database(database_url, pool_size=1))
    spec = NodeSpec(resource_id="resource_x_2", name="n", experiment_id="e", project_id="p",
                    image_location="default", image_default_username="root", flavor_ref=None,
                    vcpus=1, ram_mib=128, disk_mb=512)

    async def progress(percent: int, message: str) -> None:
        return None

    try:  # roomy's vCPUs are booked; full has them but not the disk: an operator must act
        with pytest.raises(ProviderError) as refused:
            await driver.create(spec, progress)
    finally:
        await driver.close()
    assert not isinstance(refused.value, TransientProviderError)
    assert str(refused.value) == (
        "no microVM host has disk for VM resource_x_2: it needs 576 MiB free in the agent's data "
        "directory (512 MiB disk and 64 MiB for its seed and records); the hosts with 1 vCPU / "
        "128 MiB free have too little: full (100 MiB free)")
    async with db.session() as session:
        assert await service.placed_on(session, "resource_x_2") is None  # nothing booked


async def test_placement_leaves_alone_the_capacity_held_for_others(db, settings, registration) -> None:
    """The hook the reservations domain fills (``domains.py``), here with a stand-in holder
    keeping 3 vCPUs and 2048 MiB for VMs other than ``vm-inside``."""
    async def holder(session, vm_id: str) -> service.HeldCapacity:
        return service.HeldCapacity() if vm_id == "vm-inside" else service.HeldCapacity(
            vcpus=3, memory_mib=2048, by="1 active reservation(s)")

    async with db.session() as session:
        await service.register(session, settings, registration("a", 2, 2048))
        await service.register(session, settings, registration("b", 2, 2048))
    service.register_capacity_holder("test-stand-in", holder)
    try:
        async with db.session() as session:  # 4 vCPUs free, 3 held: 1 left
            assert (await service.place(session, settings, "vm-out", 1, 1024)).name in ("a", "b")
        async with db.session() as session:
            with pytest.raises(service.NoCapacity) as refused:
                await service.place(session, settings, "vm-out-2", 1, 512)
        assert str(refused.value) == (
            "the microVM hosts have 3 vCPUs and 3072 MiB free, of which 3 vCPUs and 2048 MiB are "
            "held by 1 active reservation(s); VM vm-out-2 needs 1 vCPU / 512 MiB outside them: it "
            "waits for room")
        async with db.session() as session:  # what the holder keeps is for it
            assert await service.place(session, settings, "vm-inside", 2, 1024)
            assert await service.placed_on(session, "vm-out-2") is None
    finally:
        service._capacity_holders.pop("test-stand-in")


async def test_bookings_hold_capacity_until_a_heartbeat_counts_the_vm(
        db, settings, registration) -> None:
    async def place(vm_id: str) -> str:
        async with db.session() as session:
            return (await service.place(session, settings, vm_id, 1, 512)).name

    async def beat(vms: dict, vcpus_used: int) -> None:
        async with db.session() as session:
            host = await service.authenticate_heartbeat(session, settings, solo.id, "t" * 32)
            await service.heartbeat(session, host, Heartbeat(
                vcpus=2, memory_mib=1024, disk_free_mib=10_000, vcpus_used=vcpus_used,
                memory_used_mib=512 * vcpus_used, vms_running=vcpus_used, metrics={"vms": vms}))

    async with db.session() as session:
        solo = await service.register(session, settings, registration("solo", 2, 1024))
    assert [await place("vm-a"), await place("vm-b")] == ["solo", "solo"]
    with pytest.raises(service.NoCapacity):
        await place("vm-c")
    await beat({}, 0)  # a heartbeat from before the creates: the bookings still hold
    with pytest.raises(service.NoCapacity):
        await place("vm-c")
    await beat({"vm-a": {"state": "running"}}, 1)  # vm-a now counted by the host itself
    with pytest.raises(service.NoCapacity):
        await place("vm-c")
    async with db.session() as session:
        await service.release(session, "vm-b")  # vm-b's create failed
    assert await place("vm-c") == "solo"
    assert await place("vm-c") == "solo"  # a retried create replaces its own booking
    async with db.session() as session:  # a booking nobody confirmed expires
        await session.execute(update(HostBooking).values(booked_at=utcnow() - service.BOOKING_TTL))
    assert await place("vm-d") == "solo"
    async with db.session() as session:  # a confirmed booking stays: where vm-a was placed
        assert (await service.placed_on(session, "vm-a")).name == "solo"
        assert (await service.placed_on(session, "vm-d")).name == "solo"
        assert await service.placed_on(session, "vm-b") is None
    await beat({"vm-d": {"state": "running"}}, 1)  # vm-a no longer on the host
    async with db.session() as session:
        assert await service.placed_on(session, "vm-a") is None
        assert (await service.placed_on(session, "vm-d")).name == "solo"


async def register_silent_host(db, settings, registration, name: str) -> Host:
    """A host whose last heartbeat is older than ``host_lost_after_seconds``, marked lost."""
    async with db.session() as session:
        host = await service.register(session, settings, registration(name, 2, 1024))
        host.last_heartbeat_at = utcnow() - dt.timedelta(seconds=31)
    async with db.session() as session:
        assert await service.mark_lost(session, settings) == [name]
    return host


async def test_missed_heartbeats_mark_a_host_lost_and_a_heartbeat_brings_it_back(
    db, settings, registration
) -> None:
    host = await register_silent_host(db, settings, registration, "flaky")
    async with db.session() as session:
        host = await service.authenticate_heartbeat(session, settings, host.id, "t" * 32)
        assert host is not None and host.status == service.LOST
        assert await service.authenticate_heartbeat(session, settings, host.id, "wrong") is None
        await service.heartbeat(session, host, Heartbeat(vcpus=2, memory_mib=1024, disk_free_mib=1,
                                                         metrics={"host": {}}))
        assert host.status == service.ACTIVE
    async with db.session() as session:
        assert await service.mark_lost(session, settings) == []


async def test_a_lost_hosts_vms_report_the_loss_and_busy_hosts_are_not_forgotten(
    db, settings, registration, database_url: str
) -> None:
    host = await register_silent_host(db, settings, registration, "gone-quiet")
    driver = MicroVMDriver(settings, Database(database_url, pool_size=1))
    try:
        info = await driver.status(f"{host.id}/resource_x_1")  # no call to the unreachable agent
    finally:
        await driver.close()
    assert info.state == "error" and "microVM host gone-quiet is lost: no heartbeat since" in info.reason
    async with db.session() as session:
        await service.remove(session, host.id, "x")  # nothing placed on it: forgotten
    async with db.session() as session:
        assert await session.get(Host, host.id) is None


async def test_driver_errors_name_the_problem(db, settings, registration, database_url: str) -> None:
    driver = MicroVMDriver(settings, Database(database_url, pool_size=1))
    spec = NodeSpec(resource_id="resource_x_1", name="n", experiment_id="e", project_id="p",
                    image_location="default", image_default_username="root", flavor_ref=None,
                    vcpus=1, ram_mib=128, disk_mb=64)

    async def progress(percent: int, message: str) -> None:
        return None

    try:
        with pytest.raises(ProviderError, match="no microVM host is registered") as none:
            await driver.create(spec, progress)
        assert not isinstance(none.value, TransientProviderError)  # none expected: it fails at once
        async with db.session() as session:
            await service.create_enrolment(session, settings, "starting", "admin")
        with pytest.raises(AwaitingPlacement, match="no microVM host is live yet; waiting for starting"):
            await driver.create(spec, progress)  # a host is expected: waited for
        async with db.session() as session:
            await session.execute(delete(HostEnrolment))
            silent = await service.register(session, settings, registration("silent", 2, 512))
            silent.last_heartbeat_at = utcnow() - dt.timedelta(hours=1)
        with pytest.raises(AwaitingPlacement) as waiting:
            await driver.create(spec, progress)  # registered before: waited for too
        assert str(waiting.value) == (
            f"no microVM host is live now; waiting for silent ({service.last_heard(silent.last_heartbeat_at)}) "
            "(registered or enrolled) to send a heartbeat")
        async with db.session() as session:  # marked lost: since when is said as well
            assert await service.mark_lost(session, settings) == ["silent"]
        with pytest.raises(AwaitingPlacement,
                           match=r"no microVM host is live now; waiting for silent \(lost: no heartbeat since "
                                 r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\)"):
            await driver.create(spec, progress)
        async with db.session() as session:
            await session.execute(delete(Host))
        async with db.session() as session:
            dead = await service.register(session, settings, registration(
                "dead", 2, 512, url="https://127.0.0.1:9"))
        with pytest.raises(TransientProviderError, match=r"microVM host dead \(https://127.0.0.1:9\) unreachable"):
            await driver.create(spec, progress)
        assert (await driver.status(f"{uuid.uuid4()}/gone-vm")).state == "gone"
        with pytest.raises(TransientProviderError, match="unreachable"):
            await driver.status(f"{dead.id}/resource_x_1")
    finally:
        await driver.close()
