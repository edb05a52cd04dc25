"""The QKD networks' periodic jobs: delete the networks whose expiry has passed, sample the
links for the UI's charts, and prune old samples."""

from __future__ import annotations

import procrastinate
import structlog

from slices_blueprint.core.runtime import Runtime
from slices_blueprint.qkd import samples
from slices_blueprint.qkd.service import reap_expired
from slices_blueprint.tasks.queue import QUEUE, cron_every

log = structlog.get_logger(__name__)


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The QKD reaper (as often as the resources' reaper), the link sampler (every
    ``samples.SAMPLE_SECONDS``) and the samples' pruning (hourly, keeping
    ``metrics_retention_hours``)."""

    @app.periodic(cron=cron_every(runtime.settings.reaper_interval_seconds), periodic_id="qkd_reaper")
    @app.task(name="sb:reap_expired_qkd_networks", queue=QUEUE, queueing_lock="sb:reap_expired_qkd_networks")
    async def reap_qkd_networks(timestamp: int) -> None:
        async with runtime.db.session() as session:
            reaped = await reap_expired(session)
        if reaped:
            log.info("qkd.reaper.deleted", networks=reaped)

    @app.periodic(cron=cron_every(samples.SAMPLE_SECONDS), periodic_id="qkd_link_samples")
    @app.task(name="sb:sample_qkd_links", queue=QUEUE, queueing_lock="sb:sample_qkd_links")
    async def sample_qkd_links(timestamp: int) -> None:
        async with runtime.db.session() as session:
            await samples.sample_links(session)

    @app.periodic(cron=cron_every(3600), periodic_id="qkd_link_samples_prune")
    @app.task(name="sb:prune_qkd_link_samples", queue=QUEUE, queueing_lock="sb:prune_qkd_link_samples")
    async def prune_qkd_link_samples(timestamp: int) -> None:
        async with runtime.db.session() as session:
            await samples.prune(session, runtime.settings.metrics_retention_hours)

    del reap_qkd_networks, sample_qkd_links, prune_qkd_link_samples
