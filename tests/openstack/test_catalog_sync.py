"""Catalog sync from the real AIO cloud into a scratch database on the real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.catalog.sync import sync_catalog
from slices_blueprint.core.database import Database
from slices_blueprint.providers.openstack.driver import OpenStackDriver
from tests.openstack.support import SUFFIX, Cloud

pytestmark = pytest.mark.openstack

CLUSTER = f"aio-{SUFFIX}"


async def _flavor_row(db: Database, provider_ref: str) -> Flavor:
    async with db.session() as session:
        return await session.scalar(
            select(Flavor).where(Flavor.cluster_id == CLUSTER, Flavor.provider_ref == provider_ref)
        )


async def test_sync_adds_updates_hides_and_is_idempotent(
    cloud: Cloud, driver: OpenStackDriver, scratch_db: Database
) -> None:
    admin = cloud.admin.compute
    extra = admin.create_flavor(name=f"{cloud.flavor_name}-extra", vcpus=2, ram=128, disk=2)
    try:
        async with scratch_db.session() as session:
            first = await sync_catalog(session, driver, "vm", CLUSTER)
        flavor_label, extra_label = f"flavor:{cloud.flavor_name}", f"flavor:{extra.name}"
        assert {flavor_label, extra_label} <= set(first.added)
        assert f"image:{cloud.image_name}" in first.added
        assert first.updated == first.hidden == [] and first.changed

        row = await _flavor_row(scratch_db, extra.id)
        assert (row.friendly_name, row.vcpus, row.ram_mib, row.disk_mb, row.source, row.hidden) == (
            extra.name,
            2,
            128,
            2048,
            "sync",
            False,
        )
        async with scratch_db.session() as session:
            image = await session.scalar(
                select(DiskImage).where(
                    DiskImage.cluster_id == CLUSTER, DiskImage.location == cloud.image_id
                )
            )
        assert (image.default_username, image.min_disk_mb, image.min_ram_mib) == (
            "debian",
            1024,
            32,
        )

        async with scratch_db.session() as session:
            second = await sync_catalog(session, driver, "vm", CLUSTER)
        assert not second.changed and sorted(second.unchanged) == sorted(first.added)

        admin.update_flavor(extra, description="now described")
        async with scratch_db.session() as session:
            third = await sync_catalog(session, driver, "vm", CLUSTER)
        assert third.updated == [extra_label] and third.added == third.hidden == []
        assert (await _flavor_row(scratch_db, extra.id)).description == "now described"
    finally:
        admin.delete_flavor(extra)

    async with scratch_db.session() as session:
        fourth = await sync_catalog(session, driver, "vm", CLUSTER)
    assert fourth.hidden == [extra_label] and fourth.added == fourth.updated == []
    row = await _flavor_row(scratch_db, extra.id)
    assert row is not None and row.hidden

    async with scratch_db.session() as session:  # a hidden entry the provider offers again
        kept = await _flavor_row(scratch_db, cloud.flavor_id)
        (await session.get(Flavor, kept.id)).hidden = True
    async with scratch_db.session() as session:
        fifth = await sync_catalog(session, driver, "vm", CLUSTER)
    assert fifth.updated == [flavor_label] and fifth.hidden == []
    assert not (await _flavor_row(scratch_db, cloud.flavor_id)).hidden


async def test_manual_rows_are_never_hidden(
    cloud: Cloud, driver: OpenStackDriver, scratch_db: Database
) -> None:
    cluster = f"{CLUSTER}-manual"
    async with scratch_db.session() as session:
        session.add(
            Flavor(
                friendly_name="hand-made",
                flavor_type="vm",
                cluster_id=cluster,
                provider_ref="not-in-the-cloud",
                vcpus=1,
                ram_mib=1,
                disk_mb=0,
            )
        )
    async with scratch_db.session() as session:
        report = await sync_catalog(session, driver, "vm", cluster)
    assert "flavor:hand-made" not in report.hidden + report.unchanged + report.updated
    async with scratch_db.session() as session:
        row = await session.scalar(
            select(Flavor).where(Flavor.cluster_id == cluster, Flavor.friendly_name == "hand-made")
        )
    assert row.source == "manual" and not row.hidden
