"""The hosts' periodic job: mark hosts that stopped sending heartbeats as lost."""

from __future__ import annotations

import procrastinate

from slices_blueprint.core.runtime import Runtime
from slices_blueprint.hosts.service import mark_lost
from slices_blueprint.tasks.queue import QUEUE, STALLED_CHECK_SECONDS, cron_every


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The lost-host check, as often as the queue's stalled-job check."""

    @app.periodic(cron=cron_every(STALLED_CHECK_SECONDS), periodic_id="hosts_lost")
    @app.task(name="sb:mark_lost_hosts", queue=QUEUE, queueing_lock="sb:mark_lost_hosts")
    async def mark_lost_hosts(timestamp: int) -> None:
        async with runtime.db.session() as session:
            await mark_lost(session, runtime.settings)

    del mark_lost_hosts
