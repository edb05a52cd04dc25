"""The append-only audit trail: who did what to which resource, when, with what outcome."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_resource_at", "resource_id", "at"),)  # the rate bound

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    actor: Mapped[str] = mapped_column(String(200))  # a user id, or "system:<component>"
    action: Mapped[str] = mapped_column(String(64))  # e.g. resource.create
    outcome: Mapped[str] = mapped_column(String(16))  # requested | ok | error | drift
    resource_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column()
    experiment_id: Mapped[str | None] = mapped_column(String(200), index=True)
    project_id: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
