"""The history of QKD links for the UI's charts: every few seconds one row per live link
(stored keys, key rate, QBER, delivered keys, state), pruned after the site's
``metrics_retention_hours`` as the VMs' metrics are.

The stored-key count is computed in SQL as :func:`keypool.stored_key_count` computes it in
Python (the pool refilled to ``now`` at the link's rate, capped), so one ``INSERT ... SELECT``
samples every link without reading or locking any.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from slices_blueprint.core.models import delete_older_than, utcnow
from slices_blueprint.qkd.models import QkdLink, QkdLinkSample, QkdNetwork, QkdNode
from slices_blueprint.qkd.service import STATUS_KEY_SIZE

log = structlog.get_logger(__name__)
SAMPLE_SECONDS = 5
"""How often each live link is sampled."""


def stored_keys_at(now: dt.datetime) -> ColumnElement[int]:
    """SQL for the keys of 256 bits a link's pool holds at ``now`` (nothing written)."""
    elapsed = func.greatest(0.0, func.extract("epoch", literal(now, DateTime(timezone=True)) - QkdLink.stored_at))
    grown = case((and_(QkdLink.state == "generating", QkdLink.rate_bps > 0),
                  func.floor(QkdLink.rate_bps * elapsed)), else_=0.0)
    capacity = cast(QkdLink.max_key_count, BigInteger) * QkdLink.key_size
    bits = func.least(capacity, QkdLink.stored_bits + grown)
    return cast(func.floor(bits / STATUS_KEY_SIZE), BigInteger)


async def sample_links(session: AsyncSession, now: dt.datetime | None = None) -> int:
    """Record one sample of every link of the live networks, at ``now``; answers how many."""
    now = now or utcnow()
    rows = (select(QkdLink.id, literal(now, DateTime(timezone=True)), stored_keys_at(now), QkdLink.rate_bps, QkdLink.qber,
                   QkdLink.delivered_keys, QkdLink.state)
            .join(QkdNetwork, QkdNetwork.id == QkdLink.network_id).where(QkdNetwork.status == "active"))
    columns = ["link_id", "at", "stored_keys", "rate_bps", "qber", "delivered_keys", "state"]
    inserted = await session.scalars(insert(QkdLinkSample).from_select(columns, rows).returning(QkdLinkSample.id))
    return len(inserted.all())


async def prune(session: AsyncSession, retention_hours: int) -> int:
    """Delete the samples older than the retention; answers how many."""
    return await delete_older_than(session, QkdLinkSample.at, retention_hours, "qkd.samples.pruned")


async def network_history(session: AsyncSession, network_id: uuid.UUID,
                          since: dt.datetime) -> dict[str, list[QkdLinkSample]]:
    """The samples since ``since`` of each link of the network, by link name
    (``<node>-<node>``, as the API names it), oldest first."""
    a, b = aliased(QkdNode), aliased(QkdNode)
    rows = await session.execute(
        select(QkdLinkSample, a.name, b.name)
        .join(QkdLink, QkdLink.id == QkdLinkSample.link_id)
        .join(a, a.id == QkdLink.node_a_id).join(b, b.id == QkdLink.node_b_id)
        .where(QkdLink.network_id == network_id, QkdLinkSample.at >= since)
        .order_by(QkdLinkSample.at))
    history: dict[str, list[QkdLinkSample]] = defaultdict(list)
    for sample, name_a, name_b in rows:
        history[f"{name_a}-{name_b}"].append(sample)
    return history
