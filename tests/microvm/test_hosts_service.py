"""Host bookkeeping against real PostgreSQL: placement spreads load and respects capacity,
drained and silent hosts get no VMs, missed heartbeats mark a host lost; the microVM driver's
errors say what is wrong and where."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete

from slices_blueprint.core.database import Database
from slices_blueprint.core.models import utcnow
from slices_blueprint.hosts import service
from slices_blueprint.hosts.models import Host
from slices_blueprint.hosts.schemas import Heartbeat, HostRegistration
from slices_blueprint.providers.base import NodeSpec, ProviderError, TransientProviderError
from slices_blueprint.providers.microvm import MicroVMDriver
from tests.conftest import make_settings


@pytest.fixture
async def db(database_url: str):
    database = Database(database_url, pool_size=2)
    async with database.session() as session:
        await session.execute(delete(Host))
    yield database
    async with database.session() as session:
        await session.execute(delete(Host))
    await database.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str):
    return make_settings(tmp_path, database_url, 1, host_lost_after_seconds=30)


def registration(name: str, vcpus: int, memory_mib: int) -> HostRegistration:
    return HostRegistration(name=name, url=f"http://{name}:8700", token="t" * 32, vcpus=vcpus,
                            memory_mib=memory_mib, disk_free_mib=10_000)


async def test_placement_spreads_load_and_respects_capacity(db, settings) -> None:
    async with db.session() as session:
        await service.register(session, settings, registration("small", 4, 1024))
        await service.register(session, settings, registration("big", 4, 2048))
        drained = await service.register(session, settings, registration("drained", 64, 65536))
        drained.status = service.DRAINING
        silent = await service.register(session, settings, registration("silent", 64, 65536))
        silent.last_heartbeat_at = utcnow() - dt.timedelta(minutes=5)
    placed = []
    for _ in range(4):
        async with db.session() as session:
            placed.append((await service.place(session, settings, 1, 512)).name)
    # most memory left after placing wins; ties go to the host running fewer VMs
    assert placed == ["big", "big", "small", "big"]
    async with db.session() as session:
        for _ in range(2):  # the last 512 MiB on each
            await service.place(session, settings, 1, 512)
        with pytest.raises(service.NoCapacity) as refused:
            await service.place(session, settings, 1, 512)
    assert refused.value.hosts_known and "2 usable of 4 registered" in str(refused.value)


async def test_missed_heartbeats_mark_a_host_lost_and_a_heartbeat_brings_it_back(
    db, settings
) -> None:
    async with db.session() as session:
        host = await service.register(session, settings, registration("flaky", 2, 1024))
        host.last_heartbeat_at = utcnow() - dt.timedelta(seconds=31)
    async with db.session() as session:
        assert await service.mark_lost(session, settings) == ["flaky"]
    async with db.session() as session:
        host = await service.authenticate_heartbeat(session, settings, host.id, "t" * 32)
        assert host is not None and host.status == service.LOST
        assert await service.authenticate_heartbeat(session, settings, host.id, "wrong") is None
        service.heartbeat(host, Heartbeat(vcpus=2, memory_mib=1024, disk_free_mib=1,
                                          metrics={"host": {}}))
        assert host.status == service.ACTIVE
    async with db.session() as session:
        assert await service.mark_lost(session, settings) == []


async def test_driver_errors_name_the_problem(db, settings, database_url: str) -> None:
    driver = MicroVMDriver(settings, Database(database_url, pool_size=1))
    spec = NodeSpec(resource_id="resource_x_1", name="n", experiment_id="e", project_id="p",
                    image_location="default", image_default_username="root", flavor_ref=None,
                    vcpus=1, ram_mib=128, disk_mb=64)

    async def progress(percent: int, message: str) -> None:
        return None

    try:
        with pytest.raises(ProviderError, match="no microVM host is registered") as none:
            await driver.create(spec, progress)
        assert not isinstance(none.value, TransientProviderError)
        async with db.session() as session:
            dead = await service.register(session, settings, HostRegistration(
                name="dead", url="http://127.0.0.1:9", token="t" * 32, vcpus=2, memory_mib=512,
                disk_free_mib=1))
        with pytest.raises(TransientProviderError, match=r"microVM host dead \(http://127.0.0.1:9\) unreachable"):
            await driver.create(spec, progress)
        assert (await driver.status(f"{uuid.uuid4()}/gone-vm")).state == "gone"
        with pytest.raises(TransientProviderError, match="unreachable"):
            await driver.status(f"{dead.id}/resource_x_1")
    finally:
        await driver.close()
