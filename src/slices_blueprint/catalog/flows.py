"""Catalog sync as the API, the CLI and the periodic job run it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.sync import SyncReport, sync_catalog
from slices_blueprint.core.config import Settings
from slices_blueprint.credentials.drivers import catalog_driver_for
from slices_blueprint.events.service import record


async def sync_from_provider(
    session: AsyncSession, settings: Settings, flavor_type: str, actor: str, owner_id: str | None = None
) -> tuple[str, SyncReport]:
    """Import the catalog of the site-wide provider, or of ``owner_id``'s own credential
    when the site has none; returns the cluster id used and what changed."""
    driver, cluster_id = await catalog_driver_for(session, settings, flavor_type, owner_id)
    try:
        report = await sync_catalog(session, driver, flavor_type, cluster_id)
    finally:
        await driver.close()
    await record(session, actor=actor, action="catalog.sync", outcome="ok", flavor_type=flavor_type,
                 cluster_id=cluster_id, added=report.added, updated=report.updated, hidden=report.hidden)
    return cluster_id, report
