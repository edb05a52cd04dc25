"""Flavors (sizes) and disk images (what a machine boots or a pod runs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Connection, Integer, String, Text, UniqueConstraint, event, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey


class Flavor(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "flavors"
    __table_args__ = (UniqueConstraint("flavor_type", "cluster_id", "provider_ref"),)

    friendly_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    flavor_type: Mapped[str] = mapped_column(String(32), index=True)  # vm | k8s | microvm
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mib: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    cluster_id: Mapped[str] = mapped_column(String(200), default="")
    provider_ref: Mapped[str | None] = mapped_column(String(200))  # the provider's flavor id
    source: Mapped[str] = mapped_column(String(16), default="manual")  # manual | sync
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden_by_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # sync keeps it hidden
    extra: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class DiskImage(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "disk_images"
    __table_args__ = (UniqueConstraint("flavor_type", "cluster_id", "location"),)

    friendly_name: Mapped[str] = mapped_column(String(200))
    flavor_type: Mapped[str] = mapped_column(String(32), index=True)
    cluster_id: Mapped[str] = mapped_column(String(200), default="")
    location: Mapped[str] = mapped_column(String(1000))  # provider image id / container image
    default_username: Mapped[str | None] = mapped_column(String(100))
    min_disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    min_ram_mib: Mapped[int] = mapped_column(Integer, default=0)
    short_description: Mapped[str] = mapped_column(Text, default="")
    long_description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list)
    source: Mapped[str] = mapped_column(String(16), default="manual")
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden_by_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # sync keeps it hidden


CHANGED_CHANNEL = "sb_catalog_changed"


def _notify_change(_mapper: Any, connection: Connection, _row: Any) -> None:
    """Tell the listening API processes (``catalog.cache``) at commit: any write, any process."""
    connection.execute(text(f"NOTIFY {CHANGED_CHANNEL}"))


for _model in (Flavor, DiskImage):
    for _moment in ("after_insert", "after_update", "after_delete"):
        event.listen(_model, _moment, _notify_change)
