"""Alembic environment: runs migrations on a synchronous psycopg connection, holding a
PostgreSQL advisory lock so that several processes starting at once migrate only once."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from slices_blueprint.core.database import sqlalchemy_url
from slices_blueprint.migrations.models import Base

MIGRATION_LOCK = 727_100_001

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    url = sqlalchemy_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()
    engine.dispose()


run_migrations()
