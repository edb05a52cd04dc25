"""The pages' change feed (``core.live``) on the real PostgreSQL: a change reaches every
listening process when its transaction commits, never when it rolls back, and only the
subscribers whose predicate wants it."""

from __future__ import annotations

import asyncio
import json

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.database import Database
from slices_blueprint.core.live import CHANNEL, Change, ChangeHub, notify_all
from tests.conftest import service_of_its_own
from tests.helpers import Api


async def _woken(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def _notify(session: AsyncSession, changes: list[Change]) -> None:
    connection = await session.connection()
    await connection.run_sync(lambda sync: notify_all(sync, changes))


def test_committed_changes_reach_every_listener_and_only_wanted_ones(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        replicas = [ChangeHub(db.url), ChangeHub(db.url)]  # two API processes
        for hub in replicas:
            hub.start()
            await asyncio.wait_for(hub.listening.wait(), 10)
        try:
            async with replicas[0].subscribe(lambda c: c.get("resource") == "r1") as first, \
                       replicas[1].subscribe(lambda c: c.get("resource") == "r1") as second, \
                       replicas[1].subscribe(lambda c: c.get("resource") == "r2") as other:
                async with db.sessions() as session, session.begin():  # rolled back: never sent
                    await _notify(session, [{"resource": "r1"}])
                    await session.rollback()
                assert not await _woken(first.changed, 1)
                async with db.session() as session:
                    await _notify(session, [{"resource": "r1"}, {"resource": "r1"}])
                    await session.execute(text("SELECT pg_sleep(0.3)"))
                    assert not first.changed.is_set(), "delivered before the commit"
                assert await _woken(first.changed, 5) and await _woken(second.changed, 5)
                assert not other.changed.is_set()
            assert all(not hub.subscriptions for hub in replicas)  # a closed page leaves nothing behind
        finally:
            for hub in replicas:
                await hub.stop()
            await db.dispose()

    asyncio.run(scenario())


def test_accepted_resources_are_announced(pg_admin_url: str, data_dir, http) -> None:
    """Acceptance writes its rows with SQLAlchemy Core (no flush): its batch task, create task
    and resource are announced anyway (no worker runs here: only the API writes)."""
    with service_of_its_own(pg_admin_url, data_dir, worker=False) as live:
        api = Api(live, http)
        flavor, image = api.test_double_catalog()
        with psycopg.connect(live.settings.database_url, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            api.create(api.token("alice", "demo", "announced"), ["seen"], flavor, image)
            changes = [json.loads(n.payload) for n in listener.notifies(timeout=10, stop_after=3)]
    assert sum("resource" in c for c in changes) == 1, changes
    assert sum("task" in c for c in changes) == 2, changes  # the batch and its create
