"""How the domains are wired together: the jobs each domain registers on the queue, and the
hooks through which a lower domain learns from a higher one without importing it (quota
usage from ``resources/``, heartbeat metrics for ``telemetry/``, the host capacity active
reservations hold, left alone by ``hosts/`` placement, QKD gauges refreshed at each
scrape of ``/metrics``, what ``qkd/`` places in the machines ``resources/`` provisions,
what runs inside a reservation and is deleted at its end, resource and task writes announced
to open pages).

A composition root like ``app.py``: it may import every domain, and no domain imports it.
"""

from __future__ import annotations

import procrastinate

from slices_blueprint.catalog import scheduled as catalog_jobs
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.metrics import register_scrape_refresher
from slices_blueprint.hosts import scheduled as host_jobs
from slices_blueprint.hosts.service import register_capacity_holder, register_heartbeat_listener
from slices_blueprint.qkd import scheduled as qkd_jobs
from slices_blueprint.qkd.binding import machine_provisioning
from slices_blueprint.qkd.metrics import refresh_network_gauges
from slices_blueprint.qkd.service import (
    bound_networks,
    follow_networks,
    release_networks,
    start_networks,
)
from slices_blueprint.quotas.service import register_usage_counter
from slices_blueprint.reservations import scheduled as reservation_jobs
from slices_blueprint.reservations.binding import Binder, register_binder
from slices_blueprint.resources import flows as resource_flows
from slices_blueprint.resources import scheduled as resource_jobs
from slices_blueprint.resources.changes import announce_changes
from slices_blueprint.resources.provisioning import register_contributor
from slices_blueprint.resources.quota_usage import resource_usage
from slices_blueprint.resources.reserved import held_for_others
from slices_blueprint.tasks import queue
from slices_blueprint.telemetry import scheduled as telemetry_jobs
from slices_blueprint.telemetry.service import record_heartbeat

JOB_REGISTRARS: tuple[queue.JobRegistrar, ...] = (
    resource_flows.register_jobs,
    resource_jobs.register_jobs,
    catalog_jobs.register_jobs,
    host_jobs.register_jobs,
    telemetry_jobs.register_jobs,
    qkd_jobs.register_jobs,
    reservation_jobs.register_jobs,
)


def wire() -> None:
    """Connect the domains' hooks; idempotent. Called by ``create_app`` before serving and by
    :func:`build_queue`, so every process that runs jobs has them."""
    register_usage_counter("resources", resource_usage)
    register_heartbeat_listener("telemetry", record_heartbeat)
    register_capacity_holder("reservations", held_for_others)
    register_scrape_refresher("qkd", refresh_network_gauges)
    register_contributor("qkd", machine_provisioning)
    register_binder("resources", Binder(bound=resource_jobs.bound_resources, release=resource_jobs.release_resources,
                                        follow=resource_jobs.follow_resources))
    register_binder("qkd", Binder(bound=bound_networks, release=release_networks, start=start_networks,
                                  follow=follow_networks))
    announce_changes()


def build_queue(settings: Settings, db: Database) -> procrastinate.App:
    """The queue app with every domain's jobs, the hooks wired (:func:`wire`)."""
    wire()
    return queue.build_queue(settings, db, JOB_REGISTRARS)
