"""Advance reservations: bookable equipment, reservations over a time window, the equipment
items each holds, and per-project limits on reserved hours.

No two reservations hold one equipment item at overlapping times: ``reserved_equipment``
has an exclusion constraint on (the item, the held period). The item is keyed by its
``equipment.number`` as a one-point ``int4range``, so the constraint needs only PostgreSQL's
built-in GiST range operators (``btree_gist``, needed for ``uuid =``, is not in the embedded
server).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    column,
    func,
    literal,
)
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, ExcludeConstraint, Range
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey

SCHEDULED, ACTIVE, ENDED, CANCELLED = "scheduled", "active", "ended", "cancelled"
LIVE = (SCHEDULED, ACTIVE)  # holding their equipment and capacity, counted towards limits


class Equipment(UUIDPrimaryKey, Timestamps, Base):
    """A scarce thing an admin registered for booking: a QKD device pair, a fibre spool..."""

    __tablename__ = "equipment"

    number: Mapped[int] = mapped_column(Integer, Identity(always=True), unique=True)  # the constraint's key
    kind: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    site: Mapped[str] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)  # not offered for new bookings
    created_by: Mapped[str] = mapped_column(String(200))


class Reservation(UUIDPrimaryKey, Timestamps, Base):
    """A project's (or one experiment's) claim on equipment items and host capacity over
    ``[starts_at, ends_at)``. Its id is stable: what runs inside it may name it."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_reservations_status_ends", "status", "ends_at"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    experiment_id: Mapped[str | None] = mapped_column(ForeignKey("experiments.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default=SCHEDULED)  # scheduled|active|ended|cancelled
    vcpus: Mapped[int] = mapped_column(Integer, default=0)  # microVM host capacity held
    ram_mib: Mapped[int] = mapped_column(Integer, default=0)
    request: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)  # what was asked, as asked
    warned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # "ends soon" sent
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_by: Mapped[str | None] = mapped_column(String(200))
    cancel_reason: Mapped[str | None] = mapped_column(Text)


class ReservedEquipment(Base):
    """One equipment item a reservation holds, over ``period`` (its window; cut short to the
    time it was really held when the reservation is cancelled, empty if it never started)."""

    __tablename__ = "reserved_equipment"
    __table_args__ = (
        ExcludeConstraint(
            (func.int4range(column("equipment_number"), column("equipment_number"), literal("[]")), "&&"),
            ("period", "&&"),
            using="gist",
            name="reserved_equipment_no_overlap",
        ),
    )

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True)
    equipment_number: Mapped[int] = mapped_column(ForeignKey("equipment.number"), primary_key=True)
    period: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)


class ReservationLimit(Timestamps, Base):
    """A project's reserved-hours limit set by an admin (the site default applies otherwise;
    null is unlimited)."""

    __tablename__ = "reservation_limits"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    max_hours: Mapped[int | None] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(200))
