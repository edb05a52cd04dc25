"""Flavors and disk images by id, kept in each API process while it listens for changes.

Every write of a catalog row, by any process, sends ``NOTIFY sb_catalog_changed`` in its
transaction (``catalog.models``); PostgreSQL delivers it at commit, and each listening
process then forgets what it kept. A process that is not listening (before its listener
connects, after its connection is lost, the worker and the CLI) reads the table every time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import psycopg
import structlog
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import CHANGED_CHANNEL, DiskImage, Flavor
from slices_blueprint.core.database import Database
from slices_blueprint.core.models import detached_copy

log = structlog.get_logger(__name__)
EntryT = TypeVar("EntryT", Flavor, DiskImage)
CACHE_KEY = "catalog_cache"  # in the session's ``info``
RELISTEN_SECONDS = 1.0


class CatalogCache:
    """Catalog rows by (model, id), listings by what they select and the API's listed answers:
    copies belonging to no session, valid while listening."""

    def __init__(self) -> None:
        self._rows: dict[tuple[type, uuid.UUID], Flavor | DiskImage] = {}
        self._lists: dict[Hashable, list] = {}
        self._answers: dict[Hashable, bytes] = {}
        self._generation = 0  # counts the changes heard: a row read across one is not kept
        self.listening = False

    def forget(self) -> None:
        self._rows.clear()
        self._lists.clear()
        self._answers.clear()
        self._generation += 1

    async def get(self, session: AsyncSession, model: type[EntryT], key: uuid.UUID) -> EntryT | None:
        """The row of ``model`` with id ``key`` (None: no such row)."""
        kept = self._rows.get((model, key)) if self.listening else None
        if kept is not None:
            return kept  # type: ignore[return-value]
        generation = self._generation
        row = await session.get(model, key)
        if row is not None and self.listening and generation == self._generation:
            self._rows[(model, key)] = detached_copy(row)
        return row

    async def listing(self, session: AsyncSession, key: Hashable, query: Select) -> list:
        """The rows ``query`` selects, kept under ``key`` (which names what it selects)."""
        async def read() -> list:
            return list(await session.scalars(query))
        return list(await self._kept(self._lists, key, read, lambda rows: [detached_copy(row) for row in rows]))

    async def answer(self, key: Hashable, render: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer ``render`` writes (from the tables, not from this cache's rows), kept
        under ``key`` (which names what it answers): a listing asked again is neither read
        nor serialized again."""
        return await self._kept(self._answers, key, render, lambda body: body)

    async def _kept(self, store: dict[Hashable, Any], key: Hashable, compute: Callable[[], Awaitable[Any]],
                    copy: Callable[[Any], Any]) -> Any:
        """What ``store`` keeps under ``key``, else what ``compute`` answers, kept (a ``copy``
        of it) unless a change was heard meanwhile."""
        kept = store.get(key) if self.listening else None
        if kept is not None:
            return kept
        generation = self._generation
        computed = await compute()
        if self.listening and generation == self._generation:
            store[key] = copy(computed)
        return computed

    async def listen(self, database_url: str) -> None:
        """Forget the kept rows at every catalog change, until cancelled; a lost connection
        stops the caching until a new one listens."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANGED_CHANNEL}")
                    self.forget()
                    self.listening = True
                    async for _ in conn.notifies():
                        self.forget()
            except (psycopg.Error, OSError) as exc:
                log.warning("catalog.cache_listener_lost", error=str(exc))
            finally:
                self.listening = False
                self.forget()
            await asyncio.sleep(RELISTEN_SECONDS)


def use_cache(db: Database, cache: CatalogCache) -> None:
    """Let ``db``'s sessions read catalog rows through ``cache`` (see :func:`entry`)."""
    db.share(CACHE_KEY, cache)


async def entry(session: AsyncSession, model: type[EntryT], key: uuid.UUID) -> EntryT | None:
    """A flavor or image by id: through the session's cache when it has one (API processes),
    else from the table. A cached row belongs to no session: read it, never change it."""
    cache: CatalogCache | None = session.info.get(CACHE_KEY)
    return await cache.get(session, model, key) if cache else await session.get(model, key)


async def answer(db: Database, key: Hashable, render: Callable[[], Awaitable[bytes]]) -> bytes:
    """An answer listing catalog entries (``key`` names it): through ``db``'s cache when it
    has one, else rendered every time."""
    cache = db.shared(CACHE_KEY)
    return await cache.answer(key, render) if isinstance(cache, CatalogCache) else await render()


async def entries(session: AsyncSession, key: Hashable, query: Select) -> list:
    """The catalog rows ``query`` selects (``key`` names the selection): through the session's
    cache when it has one, else from the table. Cached rows belong to no session: read them,
    never change them."""
    cache: CatalogCache | None = session.info.get(CACHE_KEY)
    return await cache.listing(session, key, query) if cache else list(await session.scalars(query))
