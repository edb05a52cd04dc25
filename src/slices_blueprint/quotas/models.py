"""A project's quota override, set by an admin (the site's defaults apply otherwise)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps


class ProjectQuota(Timestamps, Base):
    __tablename__ = "project_quotas"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    # only the limits the admin set: a key absent inherits the site default, null is unlimited
    limits: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    updated_by: Mapped[str] = mapped_column(String(200))
