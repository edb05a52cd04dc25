"""Statements run straight on a session's psycopg connection (``core.direct_sql``) behave as
``session.execute`` would, on the real PostgreSQL: in the session's current transaction (also
when the next transaction gets another pooled connection), with SQLAlchemy's errors and the
columns' Python-side defaults; and a batch's jobs are deferred in one statement, each on its lock,
as procrastinate's own API defers a job."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import procrastinate
import psycopg
import pytest
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint import domains
from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.direct_sql import Writes, driver_connection
from slices_blueprint.events.models import Event
from slices_blueprint.identity.models import Experiment, Project
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks.service import OPERATION_JOB, defer_jobs, insert_deferring, new_task


async def insert_values(session: AsyncSession, table: Table, rows: list[dict]) -> None:
    """``rows`` inserted into ``table`` by a statement of their own."""
    writes = Writes()
    writes.insert("rows", table, rows)
    await writes.run(session)


class _RolledBack(Exception):
    """Ends the transaction: nothing is left for the suite's running workers to take."""


@contextlib.asynccontextmanager
async def _rolled_back(database_url: str, settings: Settings) -> AsyncIterator[tuple[AsyncSession, procrastinate.App]]:
    """A session and the job queue on it; the session's transaction is rolled back at the end."""
    db = Database(database_url, pool_size=1)
    queue = domains.build_queue(settings, db)
    try:
        async with queue.open_async():
            try:
                async with db.session() as session:
                    yield session, queue
                    raise _RolledBack
            except _RolledBack:
                pass
    finally:
        await db.dispose()


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

    async def scenario() -> tuple:
        async with _rolled_back(database_url, settings) as (session, queue):
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
            return [(task.id, task.resource_id, task.job_id) for task in batch], seen, await cursor.fetchone()

    deferred, rows, reference = asyncio.run(scenario())
    assert len({job for _, _, job in deferred}) == 3 and all(job for _, _, job in deferred)
    assert [(job, lock, task_id) for job, lock, task_id, *_ in rows] == [
        (job, str(resource), str(task)) for task, resource, job in deferred]  # in the tasks' order
    assert reference[1:4] == (OPERATION_JOB, 0, not_before)
    assert all(tuple(row[3:]) == reference for row in rows)


def _catalog_rows(session_id: str) -> tuple[dict, dict, dict, dict]:
    """A project, its experiment, a flavor and an image, as rows to insert."""
    project, experiment = f"proj_writes_{session_id}", f"exp_writes_{session_id}"
    return ({"id": project}, {"id": experiment, "project_id": project},
            {"id": uuid.uuid4(), "friendly_name": "w", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 64},
            {"id": uuid.uuid4(), "friendly_name": "w", "flavor_type": "test-double", "location": "w"})


def _accepted(experiment: dict, flavor: dict, image: dict, names: list[str]) -> tuple[list[dict], list]:
    """Resource rows named ``names`` and their create tasks, as an accepted request makes them."""
    now = dt.datetime.now(dt.UTC)
    resources = [{"id": uuid.uuid4(), "experiment_id": experiment["id"], "project_id": experiment["project_id"],
                  "friendly_name": name, "flavor_id": flavor["id"], "disk_image_id": image["id"],
                  "provider": "test-double", "status": "pending", "request_config": {"config": {"big": 2**70}},
                  "expires_at": now + dt.timedelta(days=1), "created_at": now, "updated_at": now}
                 for name in names]
    subtasks = [new_task(kind="create", experiment_id=experiment["id"], created_by=None, resource_id=r["id"])
                for r in resources]
    return resources, subtasks


def test_writes_are_one_statement_whose_rows_reference_each_other_and_fail_together(
        database_url: str, data_dir) -> None:
    """Resources, their tasks with the jobs deferred for them (each task naming its job, each
    job its task, on its resource's lock, as ``defer_jobs`` defers one) and their events
    written by one statement; one clash and none of it is written."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    project, experiment, flavor, image = _catalog_rows(uuid.uuid4().hex[:8])
    columns = "queue_name, task_name, priority, scheduled_at, status"
    jobs = ", ".join(f"j.{c}" for c in columns.split(", "))

    async def written(names: list[str]) -> tuple:
        async with _rolled_back(database_url, settings) as (session, queue):
            for table, row in ((Project.__table__, project), (Experiment.__table__, experiment),
                               (Flavor.__table__, flavor), (DiskImage.__table__, image)):
                await insert_values(session, table, [row])
            resources, subtasks = _accepted(experiment, flavor, image, names)
            writes = Writes()
            writes.insert("new_resources", ComputeResource.__table__, resources)
            insert_deferring(writes, queue, subtasks)
            writes.insert("new_events", Event.__table__, [
                {"actor": "t", "action": "direct.writes", "outcome": "ok", "resource_id": r["id"],
                 "experiment_id": experiment["id"]} for r in resources])
            assert await writes.run(session, "SELECT count(*) FROM deferred_jobs") == [(len(names),)]
            reference = [task.id for task in subtasks]
            await defer_jobs(session, queue, subtasks[:1])  # the reference: one job, alone
            connection = await driver_connection(session)
            cursor = await connection.execute(
                f"SELECT t.id, t.resource_id, j.lock, j.args->>'task_id', {jobs} FROM tasks t "
                "JOIN procrastinate_jobs j ON j.id = t.job_id WHERE t.id = ANY(%s) ORDER BY j.id",
                (reference,))
            tasks = await cursor.fetchall()
            cursor = await connection.execute(
                f"SELECT {columns} FROM procrastinate_jobs WHERE id = %s", (subtasks[0].job_id,))
            alone = await cursor.fetchone()
            cursor = await connection.execute(
                "SELECT count(*), min(r.request_config->'config'->>'big') FROM events e "
                "JOIN compute_resources r ON r.id = e.resource_id WHERE e.experiment_id = %s",
                (experiment["id"],))
            return reference, tasks, alone, await cursor.fetchone()

    reference, tasks, alone, events = asyncio.run(written(["a", "b", "c"]))
    assert [row[0] for row in tasks] == reference  # jobs deferred in the tasks' order
    assert all(lock == str(resource) and task_id == str(task) for task, resource, lock, task_id, *_ in tasks)
    assert all(tuple(row[4:]) == alone for row in tasks)
    assert events == (3, str(2**70))  # a value past 64 bits written as it was given

    with pytest.raises(IntegrityError, match="uq_compute_resources_live_name"):
        asyncio.run(written(["same", "same"]))  # nothing committed: the project is not there either
    assert not _projects(database_url, [project["id"]])


def test_writes_refuse_a_parameter_given_twice_and_an_empty_statement() -> None:
    writes = Writes()
    with pytest.raises(ValueError, match="nothing to write"):
        asyncio.run(writes.run(None))  # type: ignore[arg-type]
    writes.query("a", "SELECT %(x)s", x=1)
    with pytest.raises(ValueError, match=r"given twice: \['x'\]"):
        writes.query("b", "SELECT %(x)s", x=2)
