"""Periodic work: reap expired resources, reconcile stored state with providers, and
retry jobs whose worker died."""

from __future__ import annotations

import procrastinate
import structlog
from sqlalchemy import select

from slices_blueprint.catalog.flows import site_configured, sync_from_provider
from slices_blueprint.core.ids import InvalidId, parse_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import enabled_types
from slices_blueprint.resources import service as resources
from slices_blueprint.resources import states
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks.jobs import Runtime, driver_for

log = structlog.get_logger(__name__)

STALLED_AFTER_SECONDS = 30  # a worker that missed heartbeats this long is presumed dead


async def reap_expired(runtime: Runtime, queue: procrastinate.App) -> int:
    """Request deletion of every live resource past its ``expires_at``; returns how many."""
    async with runtime.db.session() as session:
        expired = list(await session.scalars(
            select(ComputeResource)
            .where(ComputeResource.status.in_(states.ACTIONS["delete"][0]), ComputeResource.expires_at < utcnow())
            .with_for_update(skip_locked=True)
            .limit(500)
        ))
        for resource in expired:
            await resources.request_action(session, queue, resource, "delete", "system:reaper", None)
    if expired:
        log.info("reaper.expired", count=len(expired))
    return len(expired)


async def reconcile(runtime: Runtime) -> dict[str, int]:
    """Compare each settled resource with its provider and record drift; report orphans."""
    found = {"checked": 0, "drift": 0, "orphans": 0}
    async with runtime.db.session() as session:
        rows = list(await session.scalars(
            select(ComputeResource).where(ComputeResource.status.in_(["running", "paused", "error"]),
                                          ComputeResource.provider_resource_id.is_not(None))
        ))
    owners: dict[tuple[str, str | None], ComputeResource] = {}
    for resource in rows:
        owners.setdefault((resource.provider, resource.created_by), resource)
        found["checked"] += 1
        found["drift"] += await _reconcile_one(runtime, resource)
    for resource in owners.values():
        found["orphans"] += await _report_orphans(runtime, resource)
    log.info("reconciler.done", **found)
    return found


async def _reconcile_one(runtime: Runtime, resource: ComputeResource) -> int:
    try:
        driver = await driver_for(runtime, resource)
        try:
            info = await driver.status(resource.provider_resource_id or "")
        finally:
            await driver.close()
    except ProviderError as exc:
        log.warning("reconciler.status_failed", resource_id=str(resource.id), error=str(exc))
        return 0
    observed = {"gone": "error", "provisioning": resource.status}.get(info.state, info.state)
    if observed == resource.status:
        return 0
    reason = "the node vanished from the provider" if info.state == "gone" else info.reason
    async with runtime.db.session() as session:
        row = await session.get(ComputeResource, resource.id, with_for_update=True)
        if row is None or row.status != resource.status or not states.can_transition(row.status, observed):
            return 0
        before = row.status
        states.transition(row, observed, reason or f"provider reports {info.state}")
        await record(session, actor="system:reconciler", action="resource.drift", outcome="drift",
                     resource_id=row.id, experiment_id=row.experiment_id, project_id=row.project_id,
                     message=f"stored {before}, provider reports {info.state}", provider=row.provider)
    return 1


async def _report_orphans(runtime: Runtime, sample: ComputeResource) -> int:
    """Provider objects tagged as ours that no live resource tracks (its row is missing or
    deleted, or it records another node: e.g. a create that gave up after retries)."""
    try:
        driver = await driver_for(runtime, sample)
        try:
            managed = await driver.list_managed()
        finally:
            await driver.close()
    except ProviderError as exc:
        log.warning("reconciler.list_failed", provider=sample.provider, error=str(exc))
        return 0
    orphans = 0
    async with runtime.db.session() as session:
        for node in managed:
            try:
                rid = parse_id(node.resource_id or "", "resource")
            except InvalidId:
                rid = None
            row = await session.get(ComputeResource, rid) if rid else None
            tracked = row is not None and row.status != "deleted" and row.provider_resource_id == node.provider_resource_id
            if not tracked:
                orphans += 1
                await record(session, actor="system:reconciler", action="provider.orphan", outcome="drift",
                             resource_id=rid, message=f"{sample.provider} node {node.provider_resource_id} has no live resource",
                             provider=sample.provider, provider_resource_id=node.provider_resource_id)
    return orphans


async def sync_site_catalogs(runtime: Runtime) -> None:
    """Import the catalogs of the operator's site-wide providers."""
    for flavor_type in enabled_types(runtime.settings):
        if not site_configured(runtime.settings, flavor_type):
            continue
        try:
            async with runtime.db.session() as session:
                await sync_from_provider(session, runtime.settings, flavor_type, "system:catalog-sync")
        except ProviderError as exc:
            log.warning("catalog.sync_failed", flavor_type=flavor_type, error=str(exc))


async def retry_stalled_jobs(queue: procrastinate.App) -> int:
    """Put back jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    stalled = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS))
    for job in stalled:
        log.warning("queue.stalled_job_retried", job_id=job.id, task=job.task_name)
        await queue.job_manager.retry_job(job)
    return len(stalled)


