"""The links' history for the UI: sampled in SQL as the key pool counts in Python, every
5 s by the worker, read back per link, pruned after the retention, gone with the network."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import func, select

from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import parse_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.qkd import keypool, samples
from slices_blueprint.qkd.models import QkdLink, QkdLinkSample
from slices_blueprint.qkd.service import ID_TYPE, STATUS_KEY_SIZE
from tests.helpers import Api
from tests.qkd.conftest import create_network, two_nodes


async def _link(db: Database, network: dict) -> QkdLink:
    async with db.session() as session:
        return await session.scalar(select(QkdLink).where(QkdLink.network_id == parse_id(network["id"], ID_TYPE)))


async def _count(db: Database, link: QkdLink, after: dt.datetime | None = None) -> int:
    async with db.session() as session:
        query = select(func.count()).select_from(QkdLinkSample).where(QkdLinkSample.link_id == link.id)
        return await session.scalar(query.where(QkdLinkSample.at > after) if after else query) or 0


async def test_stored_keys_in_sql_match_the_key_pool(db: Database, api: Api) -> None:
    """While the pool fills, when it is full (10 million keys: past 2^31 bits), once stopped."""
    token = api.token("alice", "samples", "exp-samples-sql")
    network = create_network(api, token, two_nodes("sql-count", max_key_count=10_000_000))
    link = await _link(db, network)
    moments = [link.stored_at - dt.timedelta(seconds=3), utcnow(), utcnow() + dt.timedelta(seconds=7.3),
               utcnow() + dt.timedelta(days=2)]
    async with db.session() as session:
        counted = [await session.scalar(select(samples.stored_keys_at(t)).where(QkdLink.id == link.id))
                   for t in moments]
    assert counted == [keypool.stored_key_count(link, STATUS_KEY_SIZE, t) for t in moments]
    assert 0 < counted[1] < counted[2] < counted[3] == 10_000_000  # filling, then capped

    stopped = api.ok("PATCH", f"/qkd-networks/{network['id']}/links/alice-bob", token, json={"eavesdropper": 0.6})
    assert stopped["links"][0]["state"] == "stopped"
    link = await _link(db, network)
    now = utcnow()
    async with db.session() as session:
        assert await samples.sample_links(session, now) >= 1
        sample = await session.scalar(select(QkdLinkSample).where(QkdLinkSample.link_id == link.id,
                                                                 QkdLinkSample.at == now))
    assert (sample.state, sample.rate_bps, sample.qber, sample.delivered_keys) == \
        ("stopped", 0.0, link.qber, link.delivered_keys)
    assert sample.stored_keys == keypool.stored_key_count(link, STATUS_KEY_SIZE, now + dt.timedelta(hours=1))


async def test_worker_samples_every_link_and_prunes_old_samples(db: Database, api: Api, qkd_live: Any) -> None:
    token = api.token("alice", "samples", "exp-samples-job")
    network = create_network(api, token, two_nodes("sampled"))
    link = await _link(db, network)
    started = utcnow()
    await wait_for_async(lambda: _count(db, link, started), 2, 25, "two samples by the worker's job")

    retention = qkd_live.settings.metrics_retention_hours
    old = utcnow() - dt.timedelta(hours=retention, minutes=5)
    async with db.session() as session:
        await samples.sample_links(session, old)
        history = await samples.network_history(session, link.network_id, old - dt.timedelta(minutes=1))
    assert list(history) == ["alice-bob"]
    ats = [s.at for s in history["alice-bob"]]
    assert ats == sorted(ats) and ats[0] == old and len(ats) >= 3
    async with db.session() as session:
        assert await samples.prune(session, retention) >= 1
        recent = await samples.network_history(session, link.network_id, old - dt.timedelta(minutes=1))
    assert old not in [s.at for s in recent["alice-bob"]] and len(recent["alice-bob"]) >= 2

    api.ok("DELETE", f"/qkd-networks/{network['id']}", token)
    assert await _count(db, link) == 0  # the link's samples went with it


async def wait_for_async(count: Any, at_least: int, seconds: float, what: str) -> None:
    """Poll ``count()`` (a coroutine) until it reaches ``at_least``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (got := await count()) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (got {got})")
        await asyncio.sleep(0.5)

