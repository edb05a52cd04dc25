"""Web sessions ended at logout: a copied cookie must not outlive the logout."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base


class RevokedWebSession(Base):
    """A logged-out session's id (SHA-256 of it), kept until the session would have ended."""

    __tablename__ = "revoked_web_sessions"

    sid_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
