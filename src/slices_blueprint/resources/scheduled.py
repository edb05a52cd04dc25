"""The resource lifecycle's periodic jobs: reap expired resources, reconcile stored state
with the providers (drift, orphans); and the deletion of resources whose reservation ended,
which the reservations' clock asks for (through the hook ``domains`` registers)."""

from __future__ import annotations

import datetime as dt
import uuid

import procrastinate
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.ids import InvalidId, parse_id
from slices_blueprint.core.metrics import ORPHANS_DELETED
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.events.models import Event
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import ComputeDriver, ManagedNode, ProviderError
from slices_blueprint.providers.registry import enabled_types
from slices_blueprint.reservations.binding import ended_by_the_clock
from slices_blueprint.reservations.models import Reservation
from slices_blueprint.resources import service as resources
from slices_blueprint.resources import states
from slices_blueprint.resources.flows import resource_driver
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks.queue import QUEUE, cron_every

log = structlog.get_logger(__name__)

ORPHAN_LOOKBACK = dt.timedelta(days=1)  # accounts of resources deleted this recently are searched too


async def reap_expired(runtime: Runtime, queue: procrastinate.App) -> int:
    """Request deletion of every live resource past its ``expires_at`` (but those expiring at
    their reservation's end, which its clock deletes); returns how many."""
    async with runtime.db.session() as session:
        expired = list(await session.scalars(
            select(ComputeResource)
            .where(ComputeResource.status.in_(states.ACTIONS["delete"][0]), ComputeResource.expires_at < utcnow(),
                   ~ended_by_the_clock(ComputeResource.reservation_id, ComputeResource.expires_at))
            .with_for_update(skip_locked=True)
            .limit(500)
        ))
        for resource in expired:
            await resources.request_action(session, queue, resource, "delete", "system:reaper", None)
    if expired:
        log.info("reaper.expired", count=len(expired))
    return len(expired)


async def bound_resources(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The live resources running inside each of these reservations."""
    rows = await session.execute(
        select(ComputeResource.reservation_id, ComputeResource.friendly_name)
        .where(ComputeResource.reservation_id.in_(ids), ComputeResource.status != "deleted")
        .order_by(ComputeResource.friendly_name))
    found: dict[uuid.UUID, list[str]] = {}
    for reservation_id, name in rows:
        found.setdefault(reservation_id, []).append(f"resource {name}")
    return found


async def release_resources(session: AsyncSession, queue: procrastinate.App, reservation: Reservation,
                            actor: str) -> list[str]:
    """Delete the live resources running inside ``reservation`` (it ended or was cancelled),
    through the resources' normal delete; answer their names (those being deleted already too)."""
    rows = list(await session.scalars(
        select(ComputeResource).where(ComputeResource.reservation_id == reservation.id,
                                      ComputeResource.status != "deleted")
        .order_by(ComputeResource.friendly_name).with_for_update()))
    for resource in rows:
        await resources.request_action(session, queue, resource, "delete", actor, None)
    if rows:
        log.info("reservation.resources_released", reservation_id=str(reservation.id), count=len(rows))
    return [f"resource {r.friendly_name}" for r in rows]


async def follow_resources(session: AsyncSession, settings: Settings, reservation: Reservation,
                           old_end: dt.datetime, actor: str) -> list[str]:
    """The live resources inside ``reservation`` that expired at its old end expire at its new end."""
    rows = list(await session.scalars(
        select(ComputeResource).where(ComputeResource.reservation_id == reservation.id,
                                      ComputeResource.status != "deleted", ComputeResource.expires_at == old_end)
        .order_by(ComputeResource.friendly_name).with_for_update()))
    moved = await resources.follow_reservation(session, settings, rows, reservation, old_end, actor,
                                               action="resource.extend")
    return [f"resource {r.friendly_name}" for r in moved]


async def reconcile(runtime: Runtime) -> dict[str, int]:
    """Compare each settled resource with its provider and record drift; find orphans (and
    delete those a gone resource left behind)."""
    found = {"checked": 0, "drift": 0, "orphans": 0, "orphans_deleted": 0}
    recently = utcnow() - ORPHAN_LOOKBACK
    offered = ComputeResource.provider.in_(enabled_types(runtime.settings))  # a disabled type has no driver
    async with runtime.db.session() as session:
        rows = list(await session.scalars(
            select(ComputeResource).where(ComputeResource.status.in_(["running", "paused", "stopped", "error"]),
                                          ComputeResource.provider_resource_id.is_not(None), offered)
        ))
        # whose provider accounts to search for orphans: also those of recently deleted resources
        gone = list(await session.scalars(
            select(ComputeResource).where(ComputeResource.status == "deleted", ComputeResource.deleted_at > recently,
                                          offered)
        ))
    owners: dict[tuple[str, str | None], ComputeResource] = {}
    for resource in rows:
        owners.setdefault((resource.provider, resource.created_by), resource)
        found["checked"] += 1
        found["drift"] += await _reconcile_one(runtime, resource)
    for resource in gone:
        owners.setdefault((resource.provider, resource.created_by), resource)
    for resource in owners.values():
        orphans, deleted = await _handle_orphans(runtime, resource)
        found["orphans"] += orphans
        found["orphans_deleted"] += deleted
    log.info("reconciler.done", **found)
    return found


async def _reconcile_one(runtime: Runtime, resource: ComputeResource) -> int:
    try:
        driver = await resource_driver(runtime, resource)
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


async def _quietly(percent: int, message: str) -> None:
    """Progress of work no task follows (orphan deletion)."""


async def _handle_orphans(runtime: Runtime, sample: ComputeResource) -> tuple[int, int]:
    """Find provider objects tagged with this site's resource ids that no live resource
    tracks, in the provider account ``sample`` uses; answer (orphans, deleted).

    Each is recorded once (``provider.orphan``). One left behind by a resource that is gone
    (deleted, or now recording another node: a create that gave up) is deleted once it has
    been an orphan for ``orphan_grace_minutes``, if ``delete_orphans`` is on. One whose
    resource row does not exist here is only reported: this site cannot know whose it is.
    Objects tagged by other sites sharing the account are left alone.
    """
    settings = runtime.settings
    try:
        driver = await resource_driver(runtime, sample)
    except ProviderError as exc:
        log.warning("reconciler.list_failed", provider=sample.provider, error=str(exc))
        return 0, 0
    orphans = deleted = 0
    try:
        managed = await driver.list_managed()
        for node in managed:
            try:
                rid = parse_id(node.resource_id or "", "resource", site=settings.site_id)
            except InvalidId:
                continue  # another site's object, or an unreadable tag
            verdict = await _orphan_verdict(runtime, sample.provider, node, rid)
            if verdict is None:
                continue
            orphans += 1
            if verdict:
                deleted += await _delete_orphan(runtime, driver, sample.provider, node, rid)
    except ProviderError as exc:
        log.warning("reconciler.list_failed", provider=sample.provider, error=str(exc))
    finally:
        await driver.close()
    return orphans, deleted


async def _orphan_verdict(runtime: Runtime, provider: str, node: ManagedNode,
                          rid: uuid.UUID) -> bool | None:
    """None: tracked (or an operation in flight may still record it); False: an orphan to
    report; True: an orphan to delete now."""
    async with runtime.db.session() as session:
        row = await session.get(ComputeResource, rid)
        if row is not None and row.status != "deleted" and (
                row.provider_resource_id == node.provider_resource_id or row.status not in states.FINAL):
            return None
        first_seen = await session.scalar(
            select(func.min(Event.at)).where(
                Event.resource_id == rid, Event.action == "provider.orphan",
                Event.detail["provider_resource_id"].astext == node.provider_resource_id))
        if first_seen is None:
            await record(session, actor="system:reconciler", action="provider.orphan", outcome="drift",
                         resource_id=rid, message=f"{provider} node {node.provider_resource_id} has no live resource",
                         provider=provider, provider_resource_id=node.provider_resource_id)
    grace = dt.timedelta(minutes=runtime.settings.orphan_grace_minutes)
    return (row is not None and runtime.settings.delete_orphans
            and (first_seen or utcnow()) <= utcnow() - grace)


async def _delete_orphan(runtime: Runtime, driver: ComputeDriver, provider: str, node: ManagedNode,
                         rid: uuid.UUID) -> int:
    """Delete a left-behind node (quota must not leak); answer 1 when it is gone."""
    try:
        await driver.delete(node.provider_resource_id, _quietly)
    except ProviderError as exc:
        log.warning("reconciler.orphan_delete_failed", provider=provider,
                    provider_resource_id=node.provider_resource_id, error=str(exc))
        return 0
    async with runtime.db.session() as session:
        await record(session, actor="system:reconciler", action="provider.orphan_deleted", outcome="ok",
                     resource_id=rid, message=f"deleted {provider} node {node.provider_resource_id} left behind",
                     provider=provider, provider_resource_id=node.provider_resource_id)
    log.info("reconciler.orphan_deleted", provider=provider, provider_resource_id=node.provider_resource_id)
    ORPHANS_DELETED.labels(provider=provider).inc()
    return 1


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The reaper and the reconciler, each at its configured interval."""
    settings = runtime.settings

    @app.periodic(cron=cron_every(settings.reaper_interval_seconds), periodic_id="reaper")
    @app.task(name="sb:reap_expired", queue=QUEUE, queueing_lock="sb:reap_expired", pass_context=True)
    async def reap(context: procrastinate.JobContext, timestamp: int) -> None:
        await reap_expired(runtime, context.app)

    @app.periodic(cron=cron_every(settings.reconcile_interval_seconds), periodic_id="reconciler")
    @app.task(name="sb:reconcile", queue=QUEUE, queueing_lock="sb:reconcile")
    async def reconcile_job(timestamp: int) -> None:
        await reconcile(runtime)

    del reap, reconcile_job
