"""Changes pushed to open pages: PostgreSQL ``NOTIFY`` on one channel, one ``LISTEN``
connection per process fanning each change out to the subscribers it concerns.

A change is sent with ``pg_notify`` in the transaction that makes it (:func:`notify_all`), so
it reaches every process listening on the database only when it is committed, and never
when it is rolled back. A transaction's changes travel together, as one JSON array per
notification (several only past PostgreSQL's payload limit): each listening process is
woken once per transaction, not once per row. A subscriber gives a predicate on a change (a
JSON object) and is woken, not handed the change: many changes before it looks are one
wake-up, and nothing of a change it may not see leaves the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from sqlalchemy import Connection

log = structlog.get_logger(__name__)
CHANNEL = "slices_changes"
RECONNECT_S = (0.5, 1, 2, 5)
NOTIFY_ALL = f"SELECT pg_notify('{CHANNEL}', payload) FROM unnest(%(payloads)b::text[]) AS payload"
"""One statement for every payload (the parameter ``payloads``: :func:`payloads`); ``%b``:
the array is sent in binary (no text escaping)."""
PAYLOAD_BYTES = 7_999
"""The longest payload PostgreSQL takes (``NOTIFY``: shorter than 8,000 bytes)."""

Change = dict[str, Any]
Predicate = Callable[[Change], bool]


def payloads(changes: Sequence[Change]) -> list[str]:
    """``changes`` as JSON arrays, each within :data:`PAYLOAD_BYTES` (a change too long for
    any is refused): as few notifications as PostgreSQL allows, one for most transactions."""
    out: list[str] = []
    batch: list[str] = []
    size = 2  # the brackets
    for change in changes:
        item = json.dumps(change, default=str, separators=(",", ":"))
        length = len(item.encode())
        if batch and size + 1 + length > PAYLOAD_BYTES:
            out.append(f"[{','.join(batch)}]")
            batch, size = [], 2
        size += length + (1 if batch else 0)
        if size > PAYLOAD_BYTES:
            raise ValueError(f"a change of {length} bytes is longer than a notification may be")
        batch.append(item)
    if batch:
        out.append(f"[{','.join(batch)}]")
    return out


def notify_all(connection: Connection, changes: Sequence[Change]) -> None:
    """Send ``changes`` on the channel when ``connection``'s transaction commits (one statement)."""
    if changes:
        connection.exec_driver_sql(NOTIFY_ALL, {"payloads": payloads(changes)})


@dataclass(eq=False)
class Subscription:
    """Set when a change the predicate accepts arrives (or when some may have been missed)."""

    wants: Predicate
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ChangeHub:
    """This process's one listening connection and the pages subscribed to it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.subscriptions: set[Subscription] = set()
        self.listening = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        """Stop listening and wake every subscriber (their streams then end)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        self._wake(lambda _: True)

    @property
    def running(self) -> bool:
        return self._task is not None

    @contextlib.asynccontextmanager
    async def subscribe(self, wants: Predicate) -> AsyncIterator[Subscription]:
        subscription = Subscription(wants)
        self.subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self.subscriptions.discard(subscription)

    def _wake(self, accepts: Callable[[Subscription], bool]) -> None:
        for subscription in list(self.subscriptions):
            if accepts(subscription):
                subscription.changed.set()

    def deliver(self, payload: str) -> None:
        """Wake the subscribers that want one of the changes of ``payload`` (a JSON array of
        them; a lone object, as an earlier release sent, is one change)."""
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        changes = [parsed] if isinstance(parsed, dict) else parsed
        if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
            log.warning("live.bad_payload", payload=payload[:200])
            return
        self._wake(lambda subscription: any(subscription.wants(c) for c in changes))

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    if failures:  # changes may have been missed while disconnected
                        log.info("live.reconnected", after_failures=failures)
                        self._wake(lambda _: True)
                    failures = 0
                    self.listening.set()
                    async for notification in connection.notifies():
                        self.deliver(notification.payload)
                raise ConnectionError("the listening connection ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database went away: try again
                self.listening.clear()
                delay = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                failures += 1
                log.warning("live.listen_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
