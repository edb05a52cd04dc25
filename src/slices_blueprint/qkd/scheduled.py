"""The QKD networks' periodic job: delete the networks whose expiry has passed."""

from __future__ import annotations

import procrastinate
import structlog

from slices_blueprint.core.runtime import Runtime
from slices_blueprint.qkd.service import reap_expired
from slices_blueprint.tasks.queue import QUEUE, cron_every

log = structlog.get_logger(__name__)


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The QKD reaper, as often as the resources' reaper."""

    @app.periodic(cron=cron_every(runtime.settings.reaper_interval_seconds), periodic_id="qkd_reaper")
    @app.task(name="sb:reap_expired_qkd_networks", queue=QUEUE, queueing_lock="sb:reap_expired_qkd_networks")
    async def reap_qkd_networks(timestamp: int) -> None:
        async with runtime.db.session() as session:
            reaped = await reap_expired(session)
        if reaped:
            log.info("qkd.reaper.deleted", networks=reaped)

    del reap_qkd_networks
