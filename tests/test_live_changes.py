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
from slices_blueprint.core.live import CHANNEL, PAYLOAD_BYTES, Change, ChangeHub, notify_all
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
            notifications = list(listener.notifies(timeout=3))
    assert len(notifications) == 1, notifications  # one per transaction: listeners woken once
    changes = json.loads(notifications[0].payload)
    assert sum("resource" in c for c in changes) == 1, changes
    assert sum("task" in c for c in changes) == 2, changes  # the batch and its create


def test_a_large_transaction_is_split_within_the_payload_limit(database_url: str) -> None:
    """Changes of one transaction past PostgreSQL's 8,000-byte payload limit go out as several
    notifications, every change in one of them, each short enough (PostgreSQL refuses the
    whole transaction otherwise); a listening process wakes the subscriber of the last one."""
    changes = [{"resource": f"r{i:04d}", "experiment": "e" * 40, "project": "p" * 40} for i in range(300)]

    async def scenario() -> list[str]:
        db = Database(database_url)
        hub = ChangeHub(db.url)
        hub.start()
        await asyncio.wait_for(hub.listening.wait(), 10)
        try:
            async with await psycopg.AsyncConnection.connect(database_url.replace("+psycopg", ""),
                                                             autocommit=True) as listener:
                await listener.execute(f"LISTEN {CHANNEL}")
                async with hub.subscribe(lambda c: c.get("resource") == "r0299") as last, \
                        hub.subscribe(lambda c: c.get("resource") == "r9999") as never:
                    async with db.session() as session:
                        await _notify(session, changes)
                    assert await _woken(last.changed, 5)
                    assert not never.changed.is_set()
                received = []
                async for notification in listener.notifies(timeout=3):
                    received.append(notification.payload)
                return received
        finally:
            await hub.stop()
            await db.dispose()

    received = asyncio.run(scenario())
    assert all(len(p.encode()) <= PAYLOAD_BYTES for p in received)
    # the channel is the database's: the suite's live server may announce its own changes too
    ours = [[c for c in json.loads(p) if c.get("experiment") == "e" * 40] for p in received]
    assert sum(bool(batch) for batch in ours) >= 2, "300 changes of ~110 bytes do not fit one notification"
    assert [c for batch in ours for c in batch] == changes  # all of them, in order


def test_a_lone_change_and_a_bad_payload_are_handled() -> None:
    """A payload of one JSON object (an earlier release's replica) is one change; a payload
    that is not a list of objects wakes nobody and breaks nothing."""
    hub = ChangeHub("postgresql://unused.invalid/none")
    async def scenario() -> None:
        async with hub.subscribe(lambda c: c.get("resource") == "r1") as wanted:
            for bad in ("not json", "[1, 2]", "42", "[{\"resource\": \"r2\"}]"):
                hub.deliver(bad)
            assert not wanted.changed.is_set()
            hub.deliver('{"resource": "r1"}')
            assert wanted.changed.is_set()
    asyncio.run(scenario())
