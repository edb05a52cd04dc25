"""Host and per-VM metrics: one snapshot, shown at ``/metrics`` and sent with heartbeats.

Host: memory, CPU time and load from /proc, disk of the data dir. Per VM: CPU seconds and
RSS of the VMM process (/proc/<pid>), TAP counters (bridged VMs), block counters (QMP
``query-blockstats`` or the backend's equivalent).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from slices_blueprint.agent.manager import VMManager
from slices_blueprint.agent.vmm.base import VMMError, process_alive

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return values


def _host_cpu_seconds() -> dict[str, float]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) / CLOCK_TICKS for n, v in zip(names, fields, strict=False)}


def _process(pid: int) -> dict[str, float]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return {"cpu_seconds": (int(stat[11]) + int(stat[12])) / CLOCK_TICKS,
            "rss_bytes": rss_pages * os.sysconf("SC_PAGE_SIZE")}


def host_capacity(manager: VMManager) -> dict[str, int]:
    settings = manager.settings
    memory = _meminfo()
    records = manager.list()
    active = [r for r in records if r.state in ("running", "paused", "creating")]
    disk = shutil.disk_usage(settings.data_dir)
    return {
        "vcpus": int((os.cpu_count() or 1) * settings.vcpu_overcommit),
        "memory_mib": max(memory["MemTotal"] // 2**20 - settings.reserved_memory_mib, 0),
        "disk_free_mib": disk.free // 2**20,
        "vms_running": len(active),
        "vcpus_used": sum(r.spec.vcpus for r in active),
        "memory_used_mib": sum(r.spec.memory_mib for r in active),
    }


async def snapshot(manager: VMManager) -> dict[str, Any]:
    """Every metric as plain JSON: ``{"host": {...}, "vms": {vm_id: {...}}}``."""
    memory = _meminfo()
    disk = shutil.disk_usage(manager.settings.data_dir)
    host = {
        "memory_total_bytes": memory["MemTotal"],
        "memory_available_bytes": memory["MemAvailable"],
        "cpu_seconds": _host_cpu_seconds(),
        "load1": os.getloadavg()[0],
        "disk_total_bytes": disk.total,
        "disk_free_bytes": disk.free,
        **host_capacity(manager),
    }
    vms: dict[str, Any] = {}
    for record in manager.list():
        vm_dir = manager.store.vm_dir(record.id)
        entry: dict[str, Any] = {"state": record.state, "vcpus": record.spec.vcpus,
                                 "memory_mib": record.spec.memory_mib}
        if process_alive(record.pid, vm_dir):
            assert record.pid is not None
            entry.update(_process(record.pid))
            try:
                entry["block"] = await manager.vmm.block_stats(vm_dir)
            except VMMError:
                entry["block"] = {}
        if record.tap and manager.network:
            entry["net"] = manager.network.tap_counters(record.tap)
        vms[record.id] = entry
    return {"host": host, "vms": vms}


class _SnapshotCollector(Collector):
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self):  # type: ignore[no-untyped-def]
        host = self.data["host"]
        for key in ("memory_total_bytes", "memory_available_bytes", "disk_total_bytes",
                    "disk_free_bytes", "load1", "vms_running", "vcpus", "memory_mib",
                    "vcpus_used", "memory_used_mib"):
            yield GaugeMetricFamily(f"slices_agent_host_{key}", f"host {key}", value=host[key])
        cpu = CounterMetricFamily("slices_agent_host_cpu_seconds", "host CPU time",
                                  labels=["mode"])
        for mode, seconds in host["cpu_seconds"].items():
            cpu.add_metric([mode], seconds)
        yield cpu
        vm_cpu = CounterMetricFamily("slices_agent_vm_cpu_seconds", "VMM CPU time", labels=["vm"])
        vm_rss = GaugeMetricFamily("slices_agent_vm_rss_bytes", "VMM resident memory",
                                   labels=["vm"])
        vm_up = GaugeMetricFamily("slices_agent_vm_running", "1 when running", labels=["vm"])
        vm_net = CounterMetricFamily("slices_agent_vm_net_bytes", "TAP bytes",
                                     labels=["vm", "direction"])
        vm_blk = CounterMetricFamily("slices_agent_vm_block_bytes", "block bytes",
                                     labels=["vm", "drive", "op"])
        for vm_id, vm in self.data["vms"].items():
            vm_up.add_metric([vm_id], 1.0 if vm["state"] == "running" else 0.0)
            if "cpu_seconds" in vm:
                vm_cpu.add_metric([vm_id], vm["cpu_seconds"])
                vm_rss.add_metric([vm_id], vm["rss_bytes"])
            for direction in ("rx", "tx"):
                if f"{direction}_bytes" in vm.get("net", {}):
                    vm_net.add_metric([vm_id, direction], vm["net"][f"{direction}_bytes"])
            for drive, stats in vm.get("block", {}).items():
                vm_blk.add_metric([vm_id, drive, "read"], stats["rd_bytes"])
                vm_blk.add_metric([vm_id, drive, "write"], stats["wr_bytes"])
        yield from (vm_up, vm_cpu, vm_rss, vm_net, vm_blk)


def prometheus_text(data: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(data))
    return generate_latest(registry)
