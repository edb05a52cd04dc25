"""The Alembic schema is the models' schema, and the audit trail is append-only."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from slices_blueprint.core import migrations
from slices_blueprint.core.database import sqlalchemy_url
from slices_blueprint.migrations.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _ours})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    return not (name or "").startswith("procrastinate")


def test_upgrade_is_idempotent(database_url: str) -> None:
    migrations.upgrade(database_url)
    with psycopg.connect(database_url) as conn:
        applied = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    heads = ScriptDirectory.from_config(migrations.alembic_config(database_url)).get_heads()
    assert len(heads) == 1, f"the migrations must form one chain, not {heads}"
    assert applied == [(heads[0],)]


def test_events_cannot_be_updated_or_deleted(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO events (actor, action, outcome, detail) VALUES ('t', 'test.append_only', 'ok', '{}')")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE events SET outcome = 'error' WHERE action = 'test.append_only'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM events WHERE action = 'test.append_only'")
        assert conn.execute("SELECT outcome FROM events WHERE action = 'test.append_only'").fetchone() == ("ok",)
