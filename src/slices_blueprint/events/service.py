"""Writing and reading the audit trail (the table refuses UPDATE and DELETE)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.database import Database
from slices_blueprint.events.models import Event

log = structlog.get_logger(__name__)
RATE_KEY = "audit_events_per_resource_per_minute"  # in the session's ``info``
RATE_LIMITED = "audit.rate_limited"


def limit_rate(db: Database, per_minute: int) -> None:
    """Bound the events that ``db``'s sessions record per resource per minute: the event
    past the bound is one ``audit.rate_limited`` event, later ones that minute are only logged."""
    db.share(RATE_KEY, per_minute)


async def _recent_count(session: AsyncSession, resource_id: uuid.UUID, cap: int) -> int:
    """The resource's events of the last minute, counted up to ``cap``."""
    since = func.now() - dt.timedelta(minutes=1)
    recent = select(Event.id).where(Event.resource_id == resource_id, Event.at > since).limit(cap)
    return await session.scalar(select(func.count()).select_from(recent.subquery())) or 0


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
    """Append one event, and log it with the same fields.

    Past the session's per-resource rate (``limit_rate``), the first event over it becomes
    one ``audit.rate_limited`` event and later ones that minute are only logged: a flood of
    actions never fails a request and never grows the table without bound."""
    fields = {"outcome": outcome, "actor": actor, "message": message, **detail,
              "resource_id": str(resource_id) if resource_id else None,
              "task_id": str(task_id) if task_id else None}
    per_minute = session.info.get(RATE_KEY)
    if resource_id is not None and per_minute is not None:
        recent = await _recent_count(session, resource_id, per_minute + 1)
        if recent > per_minute:
            log.info(action, audit_dropped=True, **fields)
            return
        if recent == per_minute:
            log.warning(RATE_LIMITED, **fields, dropped=action)
            detail = {"first_dropped": action, "per_minute": per_minute}
            action, outcome = RATE_LIMITED, "dropped"
            message = f"over {per_minute} events of this resource in a minute: the rest are only logged"
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
    if action != RATE_LIMITED:
        log.info(action, **fields)


def new_rows(*, actor: str, action: str, outcome: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one event per entry of ``events`` (``resource_id``, ``task_id``,
    ``experiment_id``, ``project_id``, ``message``, other keys: detail), each logged, for one
    insert (``core.direct_sql``).

    For resources created in this transaction: they have no earlier events, so the
    per-resource rate bound of :func:`record` cannot apply."""
    rows = []
    for event in events:
        detail = dict(event)
        columns = {k: detail.pop(k, None) for k in ("resource_id", "task_id", "experiment_id", "project_id", "message")}
        rows.append({"actor": actor, "action": action, "outcome": outcome, **columns, "detail": detail})
        log.info(action, outcome=outcome, actor=actor, message=columns["message"], **detail,
                 resource_id=str(columns["resource_id"]) if columns["resource_id"] else None,
                 task_id=str(columns["task_id"]) if columns["task_id"] else None)
    return rows


async def for_resource(session: AsyncSession, resource_id: uuid.UUID, limit: int = 200) -> list[Event]:
    rows = await session.scalars(
        select(Event).where(Event.resource_id == resource_id).order_by(Event.id.desc()).limit(limit)
    )
    return list(rows)
