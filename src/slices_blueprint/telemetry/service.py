"""Store the per-VM samples that arrive with host heartbeats; read them back as rates.

A host may only report on VMs placed on it: a sample is kept when the resource's
``provider_resource_id`` is that host's :func:`~slices_blueprint.agent.protocol.vm_ref`.
Samples older than the retention are pruned by a periodic job.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.agent.protocol import vm_ref
from slices_blueprint.catalog.models import Flavor
from slices_blueprint.core.ids import InvalidId, parse_id
from slices_blueprint.core.models import delete_older_than, utcnow
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.telemetry.models import VMMetricSample
from slices_blueprint.telemetry.schemas import MetricPoint

log = structlog.get_logger(__name__)

COUNTERS = ("cpu_seconds", "net_rx_bytes", "net_tx_bytes", "disk_read_bytes", "disk_write_bytes")


def _sample(resource_id: uuid.UUID, at: dt.datetime, vm: dict[str, Any]) -> VMMetricSample:
    net = vm.get("net") or {}
    drives = (vm.get("block") or {}).values()
    return VMMetricSample(
        resource_id=resource_id, at=at,
        cpu_seconds=float(vm["cpu_seconds"]), memory_bytes=int(vm["rss_bytes"]),
        # the TAP's counters are the host side's: what the host receives, the VM sent
        net_rx_bytes=net.get("tx_bytes"), net_tx_bytes=net.get("rx_bytes"),
        disk_read_bytes=sum(int(d.get("rd_bytes", 0)) for d in drives) if drives else None,
        disk_write_bytes=sum(int(d.get("wr_bytes", 0)) for d in drives) if drives else None,
    )


def _resource_ids(vm_ids: Iterable[str]) -> dict[uuid.UUID, str]:
    found = {}
    for vm_id in vm_ids:
        try:
            found[parse_id(vm_id, "resource")] = vm_id
        except InvalidId:
            continue  # a VM someone made on the host by hand: not ours to chart
    return found


async def record_heartbeat(session: AsyncSession, host_id: uuid.UUID, vms: dict[str, Any]) -> int:
    """Keep a sample for every running VM of ``vms`` that is placed on host ``host_id``."""
    running = {vm_id: vm for vm_id, vm in vms.items()
               if isinstance(vm, dict) and "cpu_seconds" in vm and "rss_bytes" in vm}
    wanted = _resource_ids(running)
    if not wanted:
        return 0
    rows = await session.execute(
        select(ComputeResource.id, ComputeResource.provider_resource_id)
        .where(ComputeResource.id.in_(wanted))
    )
    at = utcnow()
    samples = [_sample(rid, at, running[wanted[rid]]) for rid, placed in rows
               if placed == vm_ref(host_id, wanted[rid])]
    session.add_all(samples)
    if len(samples) < len(wanted):
        log.info("telemetry.samples_ignored", host_id=str(host_id), kept=len(samples),
                 ignored=len(wanted) - len(samples))
    return len(samples)


def _rate(before: float | None, after: float | None, seconds: float) -> float | None:
    if before is None or after is None or after < before:
        return None
    return (after - before) / seconds


def rates(samples: list[VMMetricSample], vcpus: int) -> list[MetricPoint]:
    """One point per pair of consecutive samples; a pair across a VMM restart (a counter went
    down) is skipped."""
    points = []
    for before, after in itertools.pairwise(samples):
        seconds = (after.at - before.at).total_seconds()
        if seconds <= 0 or after.cpu_seconds < before.cpu_seconds:
            continue
        net_rx, net_tx, disk_read, disk_write = (
            _rate(getattr(before, c), getattr(after, c), seconds) for c in COUNTERS[1:]
        )
        points.append(MetricPoint(
            at=after.at,
            cpu_percent=round(100 * (after.cpu_seconds - before.cpu_seconds) / seconds / max(vcpus, 1), 2),
            memory_mib=round(after.memory_bytes / 2**20, 1),
            net_rx_bytes_per_s=net_rx, net_tx_bytes_per_s=net_tx,
            disk_read_bytes_per_s=disk_read, disk_write_bytes_per_s=disk_write,
        ))
    return points


async def history(session: AsyncSession, resource_id: uuid.UUID, minutes: int) -> list[VMMetricSample]:
    """The resource's samples of the last ``minutes``, oldest first."""
    since = utcnow() - dt.timedelta(minutes=minutes)
    return list(await session.scalars(
        select(VMMetricSample)
        .where(VMMetricSample.resource_id == resource_id, VMMetricSample.at >= since)
        .order_by(VMMetricSample.at)
    ))


async def resource_points(session: AsyncSession, resource: ComputeResource,
                          minutes: int) -> tuple[int, list[MetricPoint]]:
    """The resource's vCPUs and its metric points over the last ``minutes``."""
    flavor = await session.get(Flavor, resource.flavor_id)
    vcpus = flavor.vcpus if flavor else 1
    return vcpus, rates(await history(session, resource.id, minutes), vcpus)


async def prune(session: AsyncSession, retention_hours: int) -> int:
    """Delete the samples older than the retention; answers how many."""
    return await delete_older_than(session, VMMetricSample.at, retention_hours, "telemetry.pruned")
