"""Registered microVM hosts running ``slices-blueprint agent``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey, utcnow


class Host(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "hosts"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(500))  # the agent's base URL
    token_ciphertext: Mapped[bytes | None] = mapped_column()  # agent token, encrypted
    cert_pem: Mapped[str | None] = mapped_column(Text)  # the agent's TLS certificate, pinned
    cert_sha256: Mapped[str | None] = mapped_column(String(64))  # its fingerprint (hex)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|draining|lost
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    disk_free_mib: Mapped[int] = mapped_column(Integer, default=0)
    vms_running: Mapped[int] = mapped_column(Integer, default=0)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)  # as the agent reported
    memory_used_mib: Mapped[int] = mapped_column(Integer, default=0)
    vmm: Mapped[str] = mapped_column(String(32), default="qemu")
    network_mode: Mapped[str] = mapped_column(String(16), default="bridge")  # bridge|user
    last_heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class HostBooking(Base):
    """Capacity a placement took on a host for a VM being created, held until the host's
    heartbeat lists that VM (its reported use then counts it) or the booking expires."""

    __tablename__ = "host_bookings"

    vm_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the agent's VM id
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    booked_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # set once the host's heartbeat lists the VM: no longer counted, kept as the placement
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class HostEnrolment(UUIDPrimaryKey, Timestamps, Base):
    """A one-time token an admin issued for one host name; only its SHA-256 is stored.

    ``replace``: the token may take over an existing host of that name (a reinstalled host,
    or one whose token can no longer be read); otherwise a taken name is refused."""

    __tablename__ = "host_enrolments"

    name: Mapped[str] = mapped_column(String(200), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    replace: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
