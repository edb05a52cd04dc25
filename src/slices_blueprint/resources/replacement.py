"""A resource replacing another of the same name (an experiment file changed it): recorded
once the old one is deleted, as the delete's follow-up, in the same transaction that ends
the delete. Until then its row waits, as JSON, in the delete task's result."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.events.service import record
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks import service as tasks
from slices_blueprint.tasks.models import Task

KEY = f"{tasks.PRIVATE}replacement"  # in the delete task's result (not shown: it holds the userdata)
_IDS = ("id", "flavor_id", "disk_image_id", "reservation_id")
_FIELDS = ("experiment_id", "project_id", "created_by", "friendly_name", "provider", "status", "status_reason",
           "request_config", "access", "provider_data", *_IDS)


def after_delete(delete: Task, replacement: ComputeResource, actor: str) -> None:
    """Have ``replacement`` recorded and created once ``delete`` (of its namesake) is done."""
    fields: dict[str, Any] = {f: getattr(replacement, f) for f in _FIELDS}
    fields |= {f: str(fields[f]) if fields[f] else None for f in _IDS}
    delete.result = {**delete.result, KEY: {**fields, "expires_at": replacement.expires_at.isoformat(),
                                            "actor": actor}}


async def create(session: AsyncSession, queue: procrastinate.App, resource: ComputeResource, actor: str,
                 parent_id: uuid.UUID | None) -> Task:
    """Record ``resource`` (its name is free) and queue its create, a subtask of ``parent_id``."""
    session.add(resource)
    await session.flush()
    task = await tasks.enqueue_operation(session, queue, kind="create", resource=resource,
                                         created_by=resource.created_by)
    task.parent_id = parent_id
    await record(session, actor=actor, action="resource.create", outcome="requested", resource_id=resource.id,
                 task_id=task.id, experiment_id=resource.experiment_id, project_id=resource.project_id,
                 name=resource.friendly_name, replacing=True)
    return task


async def create_waiting(session: AsyncSession, queue: procrastinate.App, delete: Task) -> Task | None:
    """Create the replacement that waited for ``delete`` (done: the name is free), if any."""
    waiting = (delete.result or {}).get(KEY)
    if waiting is None:
        return None
    fields = {f: waiting[f] for f in _FIELDS}
    fields |= {f: uuid.UUID(fields[f]) if fields[f] else None for f in _IDS}
    resource = ComputeResource(**fields, expires_at=dt.datetime.fromisoformat(waiting["expires_at"]))
    return await create(session, queue, resource, waiting["actor"], delete.parent_id)
