"""One metrics sample of one microVM, as its host's agent reported it in a heartbeat.

Counters (CPU seconds, bytes) are stored as reported; rates are computed when read.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Identity, Index
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base


class VMMetricSample(Base):
    __tablename__ = "vm_metric_samples"
    __table_args__ = (Index("ix_vm_metric_samples_resource_at", "resource_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    resource_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("compute_resources.id", ondelete="CASCADE")
    )
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    cpu_seconds: Mapped[float] = mapped_column(Float)  # VMM process CPU time
    memory_bytes: Mapped[int] = mapped_column(BigInteger)  # VMM resident memory
    net_rx_bytes: Mapped[int | None] = mapped_column(BigInteger)  # TAP counters (bridge mode)
    net_tx_bytes: Mapped[int | None] = mapped_column(BigInteger)
    disk_read_bytes: Mapped[int | None] = mapped_column(BigInteger)  # summed over drives
    disk_write_bytes: Mapped[int | None] = mapped_column(BigInteger)
