"""Tasks: what the API answers for every write; progress is ``completed`` (0-100)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey


class Task(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("experiment_id", "request_id"),)

    kind: Mapped[str] = mapped_column(String(16))  # batch | create | delete | reset | ...
    status: Mapped[str] = mapped_column(String(16), default="pending")
    completed: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    resource_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("compute_resources.id"), index=True
    )
    experiment_id: Mapped[str | None] = mapped_column(ForeignKey("experiments.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    request_id: Mapped[uuid.UUID | None] = mapped_column()
    request_hash: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[int | None] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
