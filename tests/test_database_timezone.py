"""The service's database sessions run in UTC whatever the server's zone (here the server says
``Etc/UTC``), keep the ``options`` a ``DATABASE_URL`` gives, and read timestamps with
``datetime.timezone.utc`` (the fast path of psycopg's loader)."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
from sqlalchemy import text

from slices_blueprint.core.database import Database


def test_sessions_and_plain_connections_run_in_utc_and_keep_the_urls_options(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        server_zone = conn.execute("SHOW TimeZone").fetchone()[0]
    url = f"{database_url}?options=-c%20application_name%3Dtz-test"

    async def scenario() -> tuple[str, str, dt.datetime, str]:
        db = Database(url, pool_size=1)
        try:
            async with db.session() as session:
                zone = (await session.execute(text("SHOW TimeZone"))).scalar_one()
                name = (await session.execute(text("SHOW application_name"))).scalar_one()
            async with db.plain_connection() as conn:
                moment = (await (await conn.execute("SELECT now()")).fetchone())[0]
                plain_zone = (await (await conn.execute("SHOW TimeZone")).fetchone())[0]
            return zone, name, moment, plain_zone
        finally:
            await db.dispose()

    zone, name, moment, plain_zone = asyncio.run(scenario())
    assert (zone, plain_zone, name) == ("UTC", "UTC", "tz-test"), server_zone
    assert moment.tzinfo is dt.UTC
