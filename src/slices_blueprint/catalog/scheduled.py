"""The catalog's periodic job: import the site-wide providers' catalogs (also requested once
at start-up)."""

from __future__ import annotations

import contextlib

import procrastinate
import structlog

from slices_blueprint.catalog.flows import sync_from_provider
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import enabled_types, site_configured
from slices_blueprint.tasks.queue import QUEUE, cron_every

log = structlog.get_logger(__name__)

CATALOG_SYNC_JOB = "sb:catalog_sync"


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


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The catalog sync, every ``catalog_sync_interval_seconds``."""

    @app.periodic(cron=cron_every(runtime.settings.catalog_sync_interval_seconds), periodic_id="catalog")
    @app.task(name=CATALOG_SYNC_JOB, queue=QUEUE, queueing_lock=CATALOG_SYNC_JOB)
    async def catalog_sync(timestamp: int) -> None:
        await sync_site_catalogs(runtime)

    del catalog_sync


async def request_catalog_sync(queue: procrastinate.App) -> None:
    """Import the site-wide catalogs soon (at start-up), unless a sync is queued already."""
    with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
        await queue.configure_task(CATALOG_SYNC_JOB, queueing_lock=CATALOG_SYNC_JOB).defer_async(timestamp=0)
