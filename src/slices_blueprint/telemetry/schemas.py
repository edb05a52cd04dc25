"""API shapes of a resource's metrics history."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class MetricPoint(BaseModel):
    """Rates over the interval that ends at ``at`` (between two samples)."""

    at: dt.datetime
    cpu_percent: float = Field(description="CPU used, in % of the VM's vCPUs")
    memory_mib: float = Field(description="host memory the VM's VMM process holds")
    net_rx_bytes_per_s: float | None = Field(None, description="received by the VM")
    net_tx_bytes_per_s: float | None = Field(None, description="sent by the VM")
    disk_read_bytes_per_s: float | None = None
    disk_write_bytes_per_s: float | None = None


class ResourceMetrics(BaseModel):
    resource_id: str
    vcpus: int
    minutes: int
    points: list[MetricPoint]
