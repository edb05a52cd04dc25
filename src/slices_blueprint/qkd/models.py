"""QKD networks: nodes with their KMEs, SAEs, emulated links, and the keys handed out.

Key material is never stored. Each link has a secret (encrypted at rest); the key with
index ``i`` on that link is derived from the secret and ``i``. A link's pool is a counter
(``stored_bits`` as of ``stored_at``, growing at ``rate_bps`` up to ``max_key_count`` keys),
so a pool of millions of keys costs one row. Only keys handed to a master and not yet fetched
by every slave have a row (``qkd_keys``), and it goes once the last slave has fetched it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from slices_blueprint.core.models import Base, Timestamps, UUIDPrimaryKey
from slices_blueprint.reservations.models import Reservation

PENDING, ACTIVE, FAILED, DELETED = "pending", "active", "failed", "deleted"
LIVE = (PENDING, ACTIVE)  # holding its name; deleted with its reservation


class QkdNetwork(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "qkd_networks"
    __table_args__ = (
        Index("uq_qkd_networks_live_name", "experiment_id", "name", unique=True,
              postgresql_where=text("status <> 'deleted'")),
        Index("ix_qkd_networks_status_expires", "status", "expires_at"),
    )

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)  # pending | active | failed | deleted
    description: Mapped[dict[str, Any]] = mapped_column(JSONB)  # as submitted, validated
    ca_cert_pem: Mapped[str] = mapped_column(Text)
    ca_key: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted PEM
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # the reservation it runs inside: deleted at its end
    reservation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(Reservation.id), index=True)


class QkdNode(UUIDPrimaryKey, Base):
    __tablename__ = "qkd_nodes"
    __table_args__ = (
        UniqueConstraint("network_id", "name"),
        # one live KME per listening address (a deleted network's rows are removed)
        UniqueConstraint("kme_host", "kme_port"),
    )

    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_networks.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kme_id: Mapped[str] = mapped_column(String(64))
    kme_host: Mapped[str] = mapped_column(String(255))
    kme_port: Mapped[int] = mapped_column(Integer)
    server_cert_pem: Mapped[str] = mapped_column(Text)
    server_key: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted PEM


class QkdSae(UUIDPrimaryKey, Base):
    __tablename__ = "qkd_saes"
    __table_args__ = (UniqueConstraint("network_id", "sae_id"),)

    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_networks.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_nodes.id", ondelete="CASCADE"))
    sae_id: Mapped[str] = mapped_column(String(64))
    cert_pem: Mapped[str] = mapped_column(Text)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted PEM; None once downloaded
    downloaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class QkdLink(UUIDPrimaryKey, Base):
    __tablename__ = "qkd_links"
    __table_args__ = (UniqueConstraint("network_id", "node_a_id", "node_b_id"),)

    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_networks.id", ondelete="CASCADE"), index=True)
    node_a_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_nodes.id", ondelete="CASCADE"))
    node_b_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_nodes.id", ondelete="CASCADE"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted; keys derive from it
    state: Mapped[str] = mapped_column(String(16))  # generating | stopped
    state_reason: Mapped[str | None] = mapped_column(Text)
    rate_bps: Mapped[float] = mapped_column(Float)
    qber: Mapped[float] = mapped_column(Float)
    max_key_count: Mapped[int] = mapped_column(Integer)
    key_size: Mapped[int] = mapped_column(Integer)
    stored_bits: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    next_index: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_keys: Mapped[int] = mapped_column(BigInteger, default=0)


class QkdKey(Base):
    """A key handed to its master SAE, waiting for its slaves; the material is derived
    from ``(link_id, key_index)`` and never stored."""

    __tablename__ = "qkd_keys"

    key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    network_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_networks.id", ondelete="CASCADE"), index=True)
    master_sae_id: Mapped[str] = mapped_column(String(64))
    link_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_links.id", ondelete="CASCADE"))
    key_index: Mapped[int] = mapped_column(BigInteger)
    size_bits: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))


class QkdKeyDelivery(Base):
    """A slave SAE that may still fetch a key (the row goes when it does)."""

    __tablename__ = "qkd_key_deliveries"

    key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_keys.key_id", ondelete="CASCADE"), primary_key=True)
    slave_sae_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class QkdLinkSample(Base):
    """A link's state every few seconds (``qkd/samples.py``), for the UI's charts; pruned
    after the site's ``metrics_retention_hours``, and gone with the link."""

    __tablename__ = "qkd_link_samples"
    __table_args__ = (Index("ix_qkd_link_samples_link_at", "link_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    link_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("qkd_links.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    stored_keys: Mapped[int] = mapped_column(BigInteger)  # keys of 256 bits in each end's pool
    rate_bps: Mapped[float] = mapped_column(Float)  # secret key rate
    qber: Mapped[float] = mapped_column(Float)
    delivered_keys: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # generating | stopped
