"""Compute resources: one VM, pod or microVM of an experiment."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey
from slices_blueprint.reservations.models import Reservation


class ComputeResource(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "compute_resources"
    __table_args__ = (
        # a name is unique among the live resources of an experiment
        Index(
            "uq_compute_resources_live_name",
            "experiment_id",
            "friendly_name",
            unique=True,
            postgresql_where=text("status <> 'deleted'"),
        ),
        Index("ix_compute_resources_status_expires", "status", "expires_at"),
        # an experiment's live resources, page by page in id order (its listing)
        Index(
            "ix_compute_resources_live_by_experiment",
            "experiment_id",
            "id",
            postgresql_where=text("status <> 'deleted'"),
        ),
    )

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))  # None: experiment token only
    friendly_name: Mapped[str] = mapped_column(String(63))
    flavor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flavors.id"))
    disk_image_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("disk_images.id"))
    provider: Mapped[str] = mapped_column(String(32))  # the flavor type that drives it
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text)
    provider_resource_id: Mapped[str | None] = mapped_column(String(300), index=True)
    request_config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    access: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)  # ips, ssh user/port
    provider_data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # the reservation it runs inside: created at its start, deleted at its end
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(Reservation.id), index=True)
