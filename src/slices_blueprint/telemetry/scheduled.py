"""Telemetry's periodic job: drop metrics samples older than the retention."""

from __future__ import annotations

import procrastinate

from slices_blueprint.core.runtime import Runtime
from slices_blueprint.tasks.queue import QUEUE, cron_every
from slices_blueprint.telemetry.service import prune


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The metrics pruning, hourly, keeping ``metrics_retention_hours``."""

    @app.periodic(cron=cron_every(3600), periodic_id="metrics_prune")
    @app.task(name="sb:prune_metrics", queue=QUEUE, queueing_lock="sb:prune_metrics")
    async def prune_metrics(timestamp: int) -> None:
        async with runtime.db.session() as session:
            await prune(session, runtime.settings.metrics_retention_hours)

    del prune_metrics
