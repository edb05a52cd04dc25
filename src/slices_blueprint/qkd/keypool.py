"""Key pools of emulated QKD links: filling at the link's rate, handing keys out once.

A link's pool is a counter refilled lazily from the time elapsed at the link's secret-key
rate, capped at ``max_key_count`` keys. Handing out ``n`` keys locks every link on the path
(in id order: two KMEs of one network never deadlock), checks and lowers their counters, and
takes ``n`` fresh indices on each: a key relayed through trusted nodes uses up key on every
hop, as a one-time-pad relay does. The material is derived from the first hop's secret and
the key's index (HKDF-SHA256), so it is the same at both ends and never stored; the key's
row and its slaves' delivery rows are all that is written, and they go once fetched.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass

import networkx as nx
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.models import utcnow
from slices_blueprint.core.secretbox import SecretBox
from slices_blueprint.qkd.models import QkdKey, QkdKeyDelivery, QkdLink

KEY_INFO = b"slices-blueprint emulated qkd key v1:"


class KeyRequestError(ValueError):
    """A request the KME cannot serve as asked (ETSI 014: 400)."""


class KeysUnavailable(RuntimeError):
    """No key can be delivered now (ETSI 014: 503): pool empty, link stopped, no path."""


@dataclass(frozen=True)
class DeliveredKey:
    key_id: uuid.UUID
    material: bytes


def derive_key(secret: bytes, index: int, size_bits: int) -> bytes:
    """Key number ``index`` of a link whose secret is ``secret``: ``size_bits`` bits."""
    info = KEY_INFO + index.to_bytes(8, "big")
    return HKDF(algorithm=SHA256(), length=size_bits // 8, salt=None, info=info).derive(secret)


def refill(link: QkdLink, now: dt.datetime) -> None:
    """Bring the link's pool up to ``now``: whole bits grown at its rate, capped."""
    capacity = link.max_key_count * link.key_size
    if link.state != "generating" or link.rate_bps <= 0 or link.stored_bits >= capacity:
        link.stored_at = now
        return
    grown = int(link.rate_bps * max(0.0, (now - link.stored_at).total_seconds()))
    if link.stored_bits + grown >= capacity:
        link.stored_bits, link.stored_at = capacity, now
    else:  # keep the fraction of a bit not grown yet for the next refill
        link.stored_bits += grown
        link.stored_at += dt.timedelta(seconds=grown / link.rate_bps)


def stored_key_count(link: QkdLink, key_size: int, now: dt.datetime) -> int:
    """Keys of ``key_size`` bits the link could hand out at ``now`` (nothing written)."""
    capacity = link.max_key_count * link.key_size
    bits = link.stored_bits
    if link.state == "generating" and link.rate_bps > 0:
        bits = min(capacity, bits + int(link.rate_bps * max(0.0, (now - link.stored_at).total_seconds())))
    return bits // key_size


def link_graph(links: list[QkdLink]) -> nx.Graph:
    graph = nx.Graph()
    for link in links:
        graph.add_edge(link.node_a_id, link.node_b_id, link=link)
    return graph


def path_links(graph: nx.Graph, source: uuid.UUID, target: uuid.UUID) -> list[QkdLink]:
    """The links of the shortest path between two nodes, preferring links that generate."""
    if source == target:
        raise KeyRequestError("both SAEs are at this KME: keys come from a QKD link between two nodes")
    live = nx.subgraph_view(graph, filter_edge=lambda a, b: graph[a][b]["link"].state == "generating")
    for candidate in (live, graph):
        try:
            nodes = nx.shortest_path(candidate, source, target)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            continue
        return [graph[a][b]["link"] for a, b in itertools.pairwise(nodes)]
    raise KeysUnavailable("no chain of QKD links joins the two SAEs' nodes")


async def lock_links(session: AsyncSession, links: list[QkdLink]) -> list[QkdLink]:
    """The same links re-read under a row lock, in id order."""
    ids = sorted({link.id for link in links})
    rows = await session.scalars(
        select(QkdLink).where(QkdLink.id.in_(ids)).order_by(QkdLink.id)
        .with_for_update().execution_options(populate_existing=True))
    return list(rows)


async def hand_out(
    session: AsyncSession,
    box: SecretBox,
    *,
    network_id: uuid.UUID,
    master_sae_id: str,
    paths: list[list[QkdLink]],
    slave_sae_ids: list[str],
    number: int,
    size: int,
) -> list[DeliveredKey]:
    """Take ``number`` keys of ``size`` bits for a master and its slaves (one path per slave),
    record them for the slaves, and answer them with their material."""
    links = await lock_links(session, [link for path in paths for link in path])
    now = utcnow()
    for link in links:
        refill(link, now)
        if link.state != "generating":
            raise KeysUnavailable(f"QKD link {link.id} is not generating key: {link.state_reason}")
        if link.stored_bits < number * size:
            raise KeysUnavailable(
                f"not enough key on a QKD link of the path: {link.stored_bits // size} keys of "
                f"{size} bits stored, {number} asked; the link makes about "
                f"{link.rate_bps / size:.1f} such keys per second")
    first = next(link for link in links if link.id == paths[0][0].id)
    start = first.next_index
    for link in links:
        link.stored_bits -= number * size
        link.next_index += number
        link.delivered_keys += number
    secret = box.decrypt(first.secret)
    keys = [DeliveredKey(uuid.uuid4(), derive_key(secret, start + i, size)) for i in range(number)]
    session.add_all([QkdKey(key_id=k.key_id, network_id=network_id, master_sae_id=master_sae_id,
                            link_id=first.id, key_index=start + i, size_bits=size)
                     for i, k in enumerate(keys)])
    await session.flush()
    session.add_all([QkdKeyDelivery(key_id=k.key_id, slave_sae_id=slave)
                     for k in keys for slave in slave_sae_ids])
    await session.flush()
    return keys


async def fetch_for_slave(
    session: AsyncSession,
    box: SecretBox,
    *,
    network_id: uuid.UUID,
    master_sae_id: str,
    slave_sae_id: str,
    key_ids: list[uuid.UUID],
) -> list[DeliveredKey]:
    """The keys ``key_ids`` that the master shared with this slave, each answered once: all
    of them, or none (an unknown or already fetched one is a :class:`KeyRequestError`)."""
    wanted = list(dict.fromkeys(key_ids))
    taken = (
        delete(QkdKeyDelivery)
        .where(QkdKeyDelivery.slave_sae_id == slave_sae_id, QkdKeyDelivery.key_id.in_(wanted),
               QkdKeyDelivery.key_id == QkdKey.key_id, QkdKey.network_id == network_id,
               QkdKey.master_sae_id == master_sae_id)
        .returning(QkdKeyDelivery.key_id)
    )
    got = set((await session.scalars(taken)).all())
    missing = [str(k) for k in wanted if k not in got]
    if missing:
        raise KeyRequestError(
            f"unknown key_ID or key already delivered: {', '.join(missing)}")
    rows = (await session.execute(
        select(QkdKey, QkdLink.secret).join(QkdLink, QkdLink.id == QkdKey.link_id)
        .where(QkdKey.key_id.in_(wanted)))).all()
    secrets: dict[uuid.UUID, bytes] = {}
    material = {}
    for key, sealed in rows:
        secret = secrets.setdefault(key.link_id, box.decrypt(sealed))
        material[key.key_id] = derive_key(secret, key.key_index, key.size_bits)
    await session.execute(delete(QkdKey).where(
        QkdKey.key_id.in_(wanted),
        ~exists().where(QkdKeyDelivery.key_id == QkdKey.key_id)))
    return [DeliveredKey(k, material[k]) for k in wanted]
