"""The Procrastinate app: registers the jobs the domains define (the resource operation,
the resource, catalog, host and telemetry periodic jobs), retries stalled jobs, and runs the
worker loop.

Procrastinate keeps its jobs in PostgreSQL (its schema is created by our first migration),
so enqueueing joins the caller's transaction and any number of workers on any number of
machines share the queue safely.
"""

from __future__ import annotations

import contextlib
from typing import Any

import procrastinate
import structlog

from slices_blueprint.catalog.scheduled import sync_site_catalogs
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.hosts.service import mark_lost
from slices_blueprint.providers.base import TransientProviderError
from slices_blueprint.resources import scheduled as resources
from slices_blueprint.resources.flows import run_operation
from slices_blueprint.tasks.service import OPERATION_JOB
from slices_blueprint.telemetry import service as telemetry

log = structlog.get_logger(__name__)

QUEUE = "operations"
STALLED_CHECK_SECONDS = 15
STALLED_AFTER_SECONDS = 30  # a worker that missed heartbeats this long is presumed dead
CATALOG_SYNC_JOB = "sb:catalog_sync"


def cron_every(seconds: int) -> str:
    """A Procrastinate cron string for "every ``seconds``" (seconds are its 6th column)."""
    if seconds < 60:
        return f"* * * * * */{max(1, seconds)}"
    return f"*/{max(1, seconds // 60)} * * * *"


def build_queue(settings: Settings, db: Database) -> procrastinate.App:
    """The queue app with every job bound to this process's settings and database."""
    runtime = Runtime(settings=settings, db=db)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db.url))
    retry = procrastinate.RetryStrategy(
        max_attempts=settings.task_max_attempts,
        exponential_wait=2,
        retry_exceptions={TransientProviderError},
    )

    @app.task(name=OPERATION_JOB, queue=QUEUE, retry=retry, pass_context=True)
    async def operation(context: procrastinate.JobContext, task_id: str) -> None:
        final = context.job.attempts + 1 >= settings.task_max_attempts
        await run_operation(runtime, task_id, final_attempt=final)

    @app.periodic(cron=cron_every(settings.reaper_interval_seconds), periodic_id="reaper")
    @app.task(name="sb:reap_expired", queue=QUEUE, queueing_lock="sb:reap_expired", pass_context=True)
    async def reap(context: procrastinate.JobContext, timestamp: int) -> None:
        await resources.reap_expired(runtime, context.app)

    @app.periodic(cron=cron_every(settings.reconcile_interval_seconds), periodic_id="reconciler")
    @app.task(name="sb:reconcile", queue=QUEUE, queueing_lock="sb:reconcile")
    async def reconcile(timestamp: int) -> None:
        await resources.reconcile(runtime)

    @app.periodic(cron=cron_every(settings.catalog_sync_interval_seconds), periodic_id="catalog")
    @app.task(name=CATALOG_SYNC_JOB, queue=QUEUE, queueing_lock=CATALOG_SYNC_JOB)
    async def catalog_sync(timestamp: int) -> None:
        await sync_site_catalogs(runtime)

    @app.periodic(cron=cron_every(STALLED_CHECK_SECONDS), periodic_id="stalled")
    @app.task(name="sb:retry_stalled", queue=QUEUE, queueing_lock="sb:retry_stalled", pass_context=True)
    async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> None:
        await retry_stalled_jobs(context.app)

    @app.periodic(cron=cron_every(STALLED_CHECK_SECONDS), periodic_id="hosts_lost")
    @app.task(name="sb:mark_lost_hosts", queue=QUEUE, queueing_lock="sb:mark_lost_hosts")
    async def mark_lost_hosts(timestamp: int) -> None:
        async with runtime.db.session() as session:
            await mark_lost(session, settings)

    @app.periodic(cron=cron_every(3600), periodic_id="metrics_prune")
    @app.task(name="sb:prune_metrics", queue=QUEUE, queueing_lock="sb:prune_metrics")
    async def prune_metrics(timestamp: int) -> None:
        async with runtime.db.session() as session:
            await telemetry.prune(session, settings.metrics_retention_hours)

    del operation, reap, reconcile, catalog_sync, retry_stalled, mark_lost_hosts, prune_metrics
    return app


async def retry_stalled_jobs(queue: procrastinate.App) -> int:
    """Put back jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    stalled = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS))
    for job in stalled:
        log.warning("queue.stalled_job_retried", job_id=job.id, task=job.task_name)
        await queue.job_manager.retry_job(job)
    return len(stalled)


async def request_catalog_sync(queue: procrastinate.App) -> None:
    """Import the site-wide catalogs soon (at start-up), unless a sync is queued already."""
    with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
        await queue.configure_task(CATALOG_SYNC_JOB, queueing_lock=CATALOG_SYNC_JOB).defer_async(timestamp=0)


async def run_worker(queue: procrastinate.App, settings: Settings, *, name: str, install_signal_handlers: bool) -> None:
    """Work until cancelled (or signalled); first retry jobs a dead worker left behind."""
    worker_options: dict[str, Any] = {
        "queues": [QUEUE],
        "name": name,
        "concurrency": settings.worker_concurrency,
        "install_signal_handlers": install_signal_handlers,
        "update_heartbeat_interval": 5,
        "stalled_worker_timeout": STALLED_AFTER_SECONDS,
        "delete_jobs": "successful",
    }
    await retry_stalled_jobs(queue)
    log.info("worker.started", name=name, concurrency=settings.worker_concurrency)
    await queue.run_worker_async(**worker_options)
