"""Statements run straight on a session's psycopg connection (``core.direct_sql``) behave as
``session.execute`` would, on the real PostgreSQL: in the session's current transaction (also
when the next transaction gets another pooled connection), with SQLAlchemy's errors and the
columns' Python-side defaults; and a batch's jobs are deferred in one statement, each on its lock,
as procrastinate's own API defers a job."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError

from slices_blueprint import domains
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.direct_sql import driver_connection, insert_values
from slices_blueprint.events.models import Event
from slices_blueprint.identity.models import Project
from slices_blueprint.tasks.service import OPERATION_JOB, defer_jobs, new_task


def _projects(database_url: str, ids: list[str]) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM projects WHERE id = ANY(%s)", (ids,))}


def test_direct_statements_run_in_the_sessions_transaction_of_the_moment(database_url: str) -> None:
    kept, undone = f"proj_direct_{uuid.uuid4().hex[:8]}", f"proj_direct_{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        db = Database(database_url, pool_size=2)
        try:
            async with db.sessions() as session:
                async with session.begin():
                    first = await driver_connection(session)
                    await insert_values(session, Project.__table__, [{"id": kept}])
                # the first transaction's connection went back to the pool: hold it elsewhere,
                # so the next transaction of the same session gets another one
                async with db.engine.connect() as elsewhere:
                    held = (await elsewhere.get_raw_connection()).driver_connection
                    assert held is first
                    with pytest.raises(RuntimeError):
                        async with session.begin():
                            assert await driver_connection(session) is not first
                            await insert_values(session, Project.__table__, [{"id": undone}])
                            raise RuntimeError("roll back")
        finally:
            await db.dispose()

    asyncio.run(scenario())
    assert _projects(database_url, [kept, undone]) == {kept}  # committed; rolled back with its session


def test_direct_statements_fail_and_default_as_sqlalchemy_would(database_url: str) -> None:
    project = f"proj_direct_{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.session() as session:
                await insert_values(session, Project.__table__, [{"id": project}])
                # detail left out: its Python default ({}) is written, as SQLAlchemy's insert would
                await insert_values(session, Event.__table__, [{"actor": "t", "action": "direct.test",
                                                                "outcome": "ok", "project_id": project}])
            with pytest.raises(IntegrityError):
                async with db.session() as session:
                    await insert_values(session, Project.__table__, [{"id": project}])
        finally:
            await db.dispose()

    asyncio.run(scenario())
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT detail FROM events WHERE project_id = %s", (project,)).fetchall() == [({},)]


def test_a_batch_of_jobs_is_deferred_at_once_each_on_its_resources_lock(database_url: str, data_dir) -> None:
    """The batch's jobs, deferred by one statement on procrastinate's SQL function, are the
    jobs procrastinate's own API defers (queue, task, priority, schedule, status), each on
    its resource's lock and naming its task."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    not_before = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    columns = "queue_name, task_name, priority, scheduled_at, status, queueing_lock"

    class RolledBack(Exception):
        """Ends the transaction: nothing is left for the suite's running workers to take."""

    async def scenario() -> tuple:
        db = Database(database_url, pool_size=1)
        queue = domains.build_queue(settings, db)
        try:
            async with queue.open_async():
                try:
                    async with db.session() as session:
                        batch = [new_task(kind="create", experiment_id="exp_direct", created_by=None,
                                          resource_id=uuid.uuid4()) for _ in range(3)]
                        await defer_jobs(session, queue, batch, not_before)
                        connection = await driver_connection(session)
                        reference = await queue.configure_task(
                            OPERATION_JOB, lock="reference", schedule_at=not_before).defer_async(task_id="reference")
                        cursor = await connection.execute(
                            f"SELECT id, lock, args->>'task_id', {columns} FROM procrastinate_jobs "
                            "WHERE id = ANY(%s) ORDER BY id", ([task.job_id for task in batch],))
                        seen = await cursor.fetchall()  # in the transaction that deferred them
                        cursor = await connection.execute(
                            f"SELECT {columns} FROM procrastinate_jobs WHERE id = %s", (reference,))
                        raise RolledBack([(task.id, task.resource_id, task.job_id) for task in batch], seen,
                                         await cursor.fetchone())
                except RolledBack as done:
                    return done.args
        finally:
            await db.dispose()

    deferred, rows, reference = asyncio.run(scenario())
    assert len({job for _, _, job in deferred}) == 3 and all(job for _, _, job in deferred)
    assert [(job, lock, task_id) for job, lock, task_id, *_ in rows] == [
        (job, str(resource), str(task)) for task, resource, job in deferred]  # in the tasks' order
    assert reference[1:4] == (OPERATION_JOB, 0, not_before)
    assert all(tuple(row[3:]) == reference for row in rows)
