"""The catalog's periodic job: import the site-wide providers' catalogs."""

from __future__ import annotations

import structlog

from slices_blueprint.catalog.flows import sync_from_provider
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import enabled_types, site_configured

log = structlog.get_logger(__name__)


async def sync_site_catalogs(runtime: Runtime) -> None:
    """Import the catalogs of the operator's site-wide providers."""
    for flavor_type in enabled_types(runtime.settings):
        if not site_configured(runtime.settings, flavor_type):
            continue
        try:
            async with runtime.db.session() as session:
                await sync_from_provider(session, runtime.settings, flavor_type,
                                         "system:catalog-sync")
        except ProviderError as exc:
            log.warning("catalog.sync_failed", flavor_type=flavor_type, error=str(exc))
