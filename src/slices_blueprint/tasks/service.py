"""Creating tasks and enqueueing their jobs in the caller's transaction.

A job is deferred on the same PostgreSQL connection and transaction that writes the resource
and task rows, so either all of them exist or none does: nothing is lost if a process dies.
Jobs carry one Procrastinate ``lock`` per resource, so two operations on one resource never
run at once, and run in the order they were requested.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import procrastinate
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.direct_sql import Writes, cursor_of
from slices_blueprint.core.ids import format_id, new_uuid
from slices_blueprint.core.models import new_row, set_values, utcnow
from slices_blueprint.tasks.models import Task
from slices_blueprint.tasks.schemas import TaskOut

OPERATION_JOB = "sb:run_operation"
PRIVATE = "_"  # a result key the API does not show (a follow-up's own data, e.g. a waiting replacement)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class Operated(Protocol):
    """What a task needs of the resource it operates on."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def experiment_id(self) -> str: ...


async def enqueue_operation(
    session: AsyncSession,
    queue: procrastinate.App,
    *,
    kind: str,
    resource: Operated,
    created_by: str | None,
    parent: Task | None = None,
    not_before: dt.datetime | None = None,
) -> Task:
    """Write a task for ``kind`` on ``resource`` and defer its job in this transaction (to
    run at ``not_before``, if given)."""
    task = Task(
        id=new_uuid(),
        kind=kind,
        status="pending",
        completed=0,
        resource_id=resource.id,
        experiment_id=resource.experiment_id,
        created_by=created_by,
        parent_id=parent.id if parent else None,
        result={},
    )
    session.add(task)
    await defer_jobs(session, queue, [task], not_before)
    return task


def new_task(*, kind: str, experiment_id: str, created_by: str | None, resource_id: uuid.UUID | None = None,
             parent_id: uuid.UUID | None = None, request_id: uuid.UUID | None = None,
             request_hash: str | None = None) -> Task:
    """A pending task, every column set (for :func:`claim_request` and ``insert_deferring``)."""
    now = utcnow()
    return new_row(Task, id=new_uuid(), kind=kind, status="pending", completed=0, parent_id=parent_id,
                   resource_id=resource_id, experiment_id=experiment_id, created_by=created_by, request_id=request_id,
                   request_hash=request_hash, attempts=0, job_id=None, result={}, created_at=now, updated_at=now)


JOBS_DEFERRED = (
    "SELECT job.id, job.n FROM unnest(procrastinate_defer_jobs_v1(ARRAY("
    "SELECT ROW(%(job_queue)s, %(job_task)s, %(job_priority)s, j.lock, NULL, j.args::jsonb, %(job_at)s)"
    "::procrastinate_job_to_defer_v1 FROM unnest(%(job_locks)b::text[], %(job_args)b::text[]) "
    "WITH ORDINALITY AS j(lock, args, n) ORDER BY j.n))) WITH ORDINALITY AS job(id, n)")
"""Procrastinate's own SQL function, called as its ``defer_jobs`` query calls it, with the
jobs as two arrays sent in binary (procrastinate's batch defer makes a job object and a
composite value of each, dumped as text: a third of a request's acceptance time); answers
each job's id and its place (``n``, from 1) in the arrays."""
DEFER_JOBS = f"SELECT id FROM ({JOBS_DEFERRED}) AS deferred ORDER BY n"


def _job_params(queue: procrastinate.App, tasks: Sequence[Task], not_before: dt.datetime | None) -> dict[str, Any]:
    """:data:`JOBS_DEFERRED`'s parameters: a job per task, on its resource's lock."""
    job = queue.tasks[OPERATION_JOB]
    return {"job_queue": job.queue, "job_task": job.name, "job_priority": job.priority, "job_at": not_before,
            "job_locks": [str(task.resource_id) for task in tasks],
            "job_args": [json.dumps({"task_id": str(task.id)}) for task in tasks]}


async def defer_jobs(session: AsyncSession, queue: procrastinate.App, tasks: Sequence[Task],
                     not_before: dt.datetime | None = None) -> None:
    """Defer the jobs running ``tasks`` (each on its resource's lock, in the queue and at the
    priority of the operation job) in the session's transaction, in one statement; set each
    task's ``job_id``."""
    async with cursor_of(session, DEFER_JOBS) as cursor:
        await cursor.execute(DEFER_JOBS, _job_params(queue, tasks, not_before))
        ids = await cursor.fetchall()
    for task, (job_id,) in zip(tasks, ids, strict=True):
        task.job_id = job_id


def insert_deferring(writes: Writes, queue: procrastinate.App, tasks: Sequence[Task],
                     not_before: dt.datetime | None = None) -> None:
    """Insert ``tasks`` (new: :func:`new_task`) as part of ``writes``, each with the job that
    runs it (:func:`defer_jobs`'s), deferred by the same statement: their ``job_id`` is
    written, not set on the objects."""
    writes.query("deferred_jobs", JOBS_DEFERRED, **_job_params(queue, tasks, not_before))
    rows = [{key: value for key, value in set_values(task).items() if key != "job_id"} for task in tasks]
    writes.insert("new_tasks", Task.__table__, rows, joined="JOIN deferred_jobs ON deferred_jobs.n = r.ordinality",
                  extra={"job_id": "deferred_jobs.id"})


def claim_request(writes: Writes, batch: Task) -> str:
    """Add to ``writes`` the insert of ``batch`` unless its experiment has a task of its
    ``request_id`` already; answer an SQL expression on the statement's parts: whether it was
    inserted. While another transaction holds the same request_id, the statement waits for it
    to end (then the request is answered by its task, or claimed here if it rolled back)."""
    writes.insert("claimed", Task.__table__, [set_values(batch)],
                  on_conflict_do_nothing=("experiment_id", "request_id"), returning="id")
    return "EXISTS (SELECT FROM claimed)"


def done_at_once(session: AsyncSession, *, kind: str, resource: Operated, created_by: str | None,
                 message: str) -> Task:
    """Write a succeeded task for ``kind`` on ``resource``: an operation done in the caller's
    transaction, with no job to queue (deleting what the provider never made)."""
    now = utcnow()
    task = Task(id=new_uuid(), kind=kind, status="succeeded", completed=100, resource_id=resource.id,
                experiment_id=resource.experiment_id, created_by=created_by, result={}, message=message,
                started_at=now, finished_at=now)
    session.add(task)
    return task


async def children(session: AsyncSession, task: Task) -> list[Task]:
    rows = await session.scalars(select(Task).where(Task.parent_id == task.id).order_by(Task.created_at, Task.id))
    return list(rows)


def aggregate_status(subtasks: list[Task]) -> tuple[str, int]:
    """A batch's status and progress from its subtasks'."""
    if not subtasks:
        return "succeeded", 100
    statuses = {t.status for t in subtasks}
    completed = sum(t.completed for t in subtasks) // len(subtasks)
    if statuses <= TERMINAL:
        status = "failed" if statuses & {"failed"} else "succeeded"
        return status, 100
    if statuses == {"pending"}:
        return "pending", completed
    return "running", completed


async def task_out(session: AsyncSession, task: Task, site: str,
                   subtasks: list[Task] | None = None) -> TaskOut:
    """The API view of a task; a batch reports the aggregate of its subtasks (read here
    unless the caller has them, e.g. just created)."""
    await session.flush()  # a task just added gets its timestamps
    if subtasks is None:
        subtasks = await children(session, task) if task.kind == "batch" else []
    return _task_out(task, subtasks, site)


def _task_out(task: Task, subtasks: list[Task], site: str) -> TaskOut:
    status, completed = (task.status, task.completed)
    finished_at = task.finished_at
    if task.kind == "batch":
        status, completed = aggregate_status(subtasks)
        finished_at = max((t.finished_at for t in subtasks if t.finished_at), default=None) if status in TERMINAL else None
    resource_ids = [format_id("resource", site, t.resource_id) for t in subtasks if t.resource_id]
    if task.resource_id:
        resource_ids = [format_id("resource", site, task.resource_id)]
    errors = [t.error for t in subtasks if t.error]
    return TaskOut(
        id=format_id("task", site, task.id),
        kind=task.kind,
        status=status,
        completed=completed,
        message=task.message,
        error=task.error or ("; ".join(errors) if errors else None),
        resource_id=resource_ids[0] if task.resource_id else None,
        resource_ids=resource_ids,
        subtasks=[_task_out(t, [], site) for t in subtasks],
        result={k: v for k, v in task.result.items() if not k.startswith(PRIVATE)},
        created_at=task.created_at,
        updated_at=task.updated_at,
        finished_at=finished_at,
    )


async def find_by_request(session: AsyncSession, experiment_id: str, request_id: uuid.UUID) -> Task | None:
    return await session.scalar(
        select(Task).where(Task.experiment_id == experiment_id, Task.request_id == request_id)
    )


async def latest_task_for(session: AsyncSession, resource_id: uuid.UUID, kind: str) -> Task | None:
    """The newest task of ``kind`` on a resource, finished or not (for idempotent deletes)."""
    return await session.scalar(
        select(Task)
        .where(Task.resource_id == resource_id, Task.kind == kind)
        .order_by(Task.created_at.desc())
        .limit(1)
    )
