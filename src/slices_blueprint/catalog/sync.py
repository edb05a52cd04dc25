"""Import a provider's catalog into ``flavors`` / ``disk_images``.

Idempotent upsert keyed by (flavor_type, cluster_id, provider id): new entries are added,
changed ones updated, entries the provider no longer offers are hidden (rows may still be
referenced by resources, so nothing is deleted), and an entry that comes back is shown
again unless an admin hid it. Rows created by hand (``source="manual"``) are never hidden. Concurrent syncs of
the same cluster are serialized with a transaction-scoped advisory lock. The caller owns
the transaction (the session is flushed, not committed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.providers.base import CatalogFlavor, CatalogImage, ComputeDriver

log = structlog.get_logger(__name__)

SOURCE = "sync"


@dataclass
class SyncReport:
    """What a sync changed; entries read ``flavor:<name>`` or ``image:<name>``."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.hidden)


async def sync_catalog(
    session: AsyncSession, driver: ComputeDriver, flavor_type: str, cluster_id: str
) -> SyncReport:
    """Upsert the driver's flavors and images for ``(flavor_type, cluster_id)``."""
    catalog = await driver.catalog()
    await session.execute(
        select(
            func.pg_advisory_xact_lock(func.hashtext(f"catalog-sync:{flavor_type}:{cluster_id}"))
        )
    )
    report = SyncReport()
    flavors = {f.provider_ref: _flavor_fields(f) for f in catalog.flavors}
    images = {i.location: _image_fields(i) for i in catalog.images}
    await _upsert(
        session, Flavor, Flavor.provider_ref, flavors, flavor_type, cluster_id, "flavor", report
    )
    await _upsert(
        session, DiskImage, DiskImage.location, images, flavor_type, cluster_id, "image", report
    )
    await session.flush()
    log.info(
        "catalog.synced",
        flavor_type=flavor_type,
        cluster_id=cluster_id,
        added=len(report.added),
        updated=len(report.updated),
        hidden=len(report.hidden),
        unchanged=len(report.unchanged),
    )
    return report


async def _upsert(
    session: AsyncSession,
    model: type[Flavor | DiskImage],
    key_column: Any,
    offered: dict[str, dict[str, Any]],
    flavor_type: str,
    cluster_id: str,
    kind: str,
    report: SyncReport,
) -> None:
    """Bring the rows of one table in line with what the provider ``offered`` (key -> fields)."""
    rows: Sequence[Any] = (
        await session.scalars(
            select(model).where(model.flavor_type == flavor_type, model.cluster_id == cluster_id)
        )
    ).all()
    existing = {getattr(row, key_column.key): row for row in rows}
    for key, fields in offered.items():
        row = existing.get(key)
        label = f"{kind}:{fields['friendly_name']}"
        if row is None:
            session.add(
                model(
                    flavor_type=flavor_type,
                    cluster_id=cluster_id,
                    **{key_column.key: key},
                    **fields,
                )
            )
            report.added.append(label)
        elif _apply(row, {**fields, "hidden": row.hidden_by_admin}):  # an admin's hide stays
            report.updated.append(label)
        else:
            report.unchanged.append(label)
    for key, row in existing.items():
        if key not in offered and row.source == SOURCE and not row.hidden:
            row.hidden = True
            report.hidden.append(f"{kind}:{row.friendly_name}")


def _apply(row: Any, fields: dict[str, Any]) -> bool:
    """Set ``fields`` on ``row``; whether anything changed."""
    changed = {name: value for name, value in fields.items() if getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    return bool(changed)


def _flavor_fields(flavor: CatalogFlavor) -> dict[str, Any]:
    return {
        "friendly_name": flavor.name,
        "description": flavor.description,
        "vcpus": flavor.vcpus,
        "ram_mib": flavor.ram_mib,
        "disk_mb": flavor.disk_mb,
        "source": SOURCE,
        "hidden": False,
    }


def _image_fields(image: CatalogImage) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "friendly_name": image.name,
        "min_disk_mb": image.min_disk_mb,
        "min_ram_mib": image.min_ram_mib,
        "short_description": image.description,
        "source": SOURCE,
        "hidden": False,
    }
    if image.default_username:  # keep a username an admin set when the provider has none
        fields["default_username"] = image.default_username
    return fields
