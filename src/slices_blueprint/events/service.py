"""Writing and reading the audit trail (the table refuses UPDATE and DELETE)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.events.models import Event

log = structlog.get_logger(__name__)


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    outcome: str,
    resource_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    experiment_id: str | None = None,
    project_id: str | None = None,
    message: str | None = None,
    **detail: Any,
) -> None:
    """Append one event, and log it with the same fields."""
    session.add(
        Event(
            actor=actor,
            action=action,
            outcome=outcome,
            resource_id=resource_id,
            task_id=task_id,
            experiment_id=experiment_id,
            project_id=project_id,
            message=message,
            detail=detail,
        )
    )
    log.info(action, outcome=outcome, actor=actor, resource_id=str(resource_id) if resource_id else None, task_id=str(task_id) if task_id else None, message=message, **detail)


async def for_resource(session: AsyncSession, resource_id: uuid.UUID, limit: int = 200) -> list[Event]:
    rows = await session.scalars(
        select(Event).where(Event.resource_id == resource_id).order_by(Event.id.desc()).limit(limit)
    )
    return list(rows)
