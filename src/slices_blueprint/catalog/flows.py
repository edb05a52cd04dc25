"""Catalog sync as the API, the CLI and the periodic job run it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.sync import SyncReport, sync_catalog
from slices_blueprint.core.config import Settings
from slices_blueprint.credentials.service import plaintext_for
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import build_driver, driver_class

SITE_CLUSTER = "site"


def site_configured(settings: Settings, flavor_type: str) -> bool:
    """Whether the operator configured a site-wide provider for ``flavor_type`` (microVM
    hosts always belong to the site)."""
    if flavor_type == "microvm":
        return True
    return {"vm": settings.openstack_clouds_yaml, "k8s": settings.kubernetes_kubeconfig}.get(flavor_type) is not None


async def sync_from_provider(
    session: AsyncSession, settings: Settings, flavor_type: str, actor: str, owner_id: str | None = None
) -> tuple[str, SyncReport]:
    """Import the catalog of the site-wide provider, or of ``owner_id``'s own credential
    when the site has none; returns the cluster id used and what changed."""
    kind = driver_class(flavor_type).credential_kind
    plaintext, selected = (None, None)
    if kind is not None and not site_configured(settings, flavor_type):
        plaintext, selected = await plaintext_for(session, settings, kind, owner_id)
        if plaintext is None:
            raise ProviderError(f"no site-wide {flavor_type} provider is configured and you have no {kind} credential")
    cluster_id = selected if plaintext is not None and selected else SITE_CLUSTER
    driver = build_driver(settings, flavor_type, plaintext, selected)
    try:
        report = await sync_catalog(session, driver, flavor_type, cluster_id)
    finally:
        await driver.close()
    await record(session, actor=actor, action="catalog.sync", outcome="ok", flavor_type=flavor_type,
                 cluster_id=cluster_id, added=report.added, updated=report.updated, hidden=report.hidden)
    return cluster_id, report
