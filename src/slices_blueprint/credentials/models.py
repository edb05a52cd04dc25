"""Uploaded provider credentials (each provider's ``credential_kind``), encrypted at rest."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey


class Credential(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "credentials"
    __table_args__ = (
        Index(
            "uq_credentials_owner_kind",
            "owner_id",
            "kind",
            unique=True,
            postgresql_where=text("owner_id IS NOT NULL"),
        ),
    )

    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)  # None: site
    kind: Mapped[str] = mapped_column(String(32))  # the provider's credential_kind
    selected: Mapped[str | None] = mapped_column(String(200))  # the entry of the file in use
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_check_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_check_error: Mapped[str | None] = mapped_column(Text)
