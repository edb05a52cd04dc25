"""The service's database sessions run in UTC whatever the server's zone (here a database
whose default zone is Europe/Paris), keep the ``options`` a ``DATABASE_URL`` gives, and read
timestamps with ``datetime.timezone.utc`` (the fast path of psycopg's loader): the API
writes ``Z`` times, never the server's offset."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
from sqlalchemy import text

from slices_blueprint.core.database import Database
from tests.conftest import fresh_database


def test_sessions_and_plain_connections_run_in_utc_and_keep_the_urls_options(pg_admin_url: str) -> None:
    with fresh_database(pg_admin_url) as database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            name = conn.execute("SELECT current_database()").fetchone()[0]
            conn.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Europe/Paris'")
        with psycopg.connect(database_url) as conn:  # what a plain client of this database gets
            assert conn.execute("SHOW TimeZone").fetchone()[0] == "Europe/Paris"

        async def scenario() -> tuple[str, str, dt.datetime, str]:
            with_options = f"{database_url}{'&' if '?' in database_url else '?'}options=-c%20application_name%3Dtz-test"
            db = Database(with_options, pool_size=1)
            try:
                async with db.session() as session:
                    zone = (await session.execute(text("SHOW TimeZone"))).scalar_one()
                    app_name = (await session.execute(text("SHOW application_name"))).scalar_one()
                async def now_and_zone(conn: psycopg.AsyncConnection) -> tuple[dt.datetime, str]:
                    moment = (await (await conn.execute("SELECT now()")).fetchone())[0]
                    return moment, (await (await conn.execute("SHOW TimeZone")).fetchone())[0]

                moment, plain_zone = await db.plain_read(now_and_zone)
                return zone, app_name, moment, plain_zone
            finally:
                await db.dispose()

        zone, app_name, moment, plain_zone = asyncio.run(scenario())
    assert (zone, plain_zone, app_name) == ("UTC", "UTC", "tz-test")
    assert moment.tzinfo is dt.UTC
