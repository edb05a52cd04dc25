"""The reservations' periodic job: start, warn and end reservations at their times."""

from __future__ import annotations

import procrastinate
import structlog

from slices_blueprint.core.runtime import Runtime
from slices_blueprint.reservations.service import advance
from slices_blueprint.tasks.queue import QUEUE, cron_every

log = structlog.get_logger(__name__)


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The reservations' clock, as often as the resources' reaper."""

    @app.periodic(cron=cron_every(runtime.settings.reaper_interval_seconds), periodic_id="reservations_clock")
    @app.task(name="sb:advance_reservations", queue=QUEUE, queueing_lock="sb:advance_reservations",
              pass_context=True)
    async def advance_reservations(context: procrastinate.JobContext, timestamp: int) -> None:
        async with runtime.db.session() as session:
            changed = await advance(session, runtime.settings, context.app)
        if any(changed.values()):
            log.info("reservations.clock", **changed)

    del advance_reservations
