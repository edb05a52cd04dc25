"""The Procrastinate app: the queue every domain's jobs run on. It retries stalled jobs and
runs the worker loop; the jobs themselves are registered by the domains that define them
(each domain's ``register_jobs``, listed in ``slices_blueprint.domains``).

Procrastinate keeps its jobs in PostgreSQL (its schema is created by our first migration),
so enqueueing joins the caller's transaction and any number of workers on any number of
machines share the queue safely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import procrastinate
import structlog

from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.runtime import Runtime

log = structlog.get_logger(__name__)

QUEUE = "operations"
STALLED_CHECK_SECONDS = 15
STALLED_AFTER_SECONDS = 30  # a worker that missed heartbeats this long is presumed dead

JobRegistrar = Callable[[procrastinate.App, Runtime], None]
"""A domain's ``register_jobs(app, runtime)``: adds its jobs (on ``QUEUE``) to the queue app."""


def cron_every(seconds: int) -> str:
    """A Procrastinate cron string for "every ``seconds``" (seconds are its 6th column)."""
    if seconds < 60:
        return f"* * * * * */{max(1, seconds)}"
    return f"*/{max(1, seconds // 60)} * * * *"


def build_queue(settings: Settings, db: Database, registrars: Iterable[JobRegistrar]) -> procrastinate.App:
    """The queue app with the stalled-job check and every registrar's jobs, bound to this
    process's settings and database."""
    runtime = Runtime(settings=settings, db=db)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db.url))

    @app.periodic(cron=cron_every(STALLED_CHECK_SECONDS), periodic_id="stalled")
    @app.task(name="sb:retry_stalled", queue=QUEUE, queueing_lock="sb:retry_stalled", pass_context=True)
    async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> None:
        await retry_stalled_jobs(context.app)

    del retry_stalled
    for register_jobs in registrars:
        register_jobs(app, runtime)
    return app


async def retry_stalled_jobs(queue: procrastinate.App) -> int:
    """Put back jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    stalled = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS))
    for job in stalled:
        log.warning("queue.stalled_job_retried", job_id=job.id, task=job.task_name)
        await queue.job_manager.retry_job(job)
    return len(stalled)


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
