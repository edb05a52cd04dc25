"""Every change to a resource or a task is announced to open pages (``core.live``), in the
transaction that writes it: whatever makes it (an API call, a job, the reaper, the reconciler,
another replica) and whichever column changes (status, addresses, expiry, progress).

The announcement names the row and what decides who may see it, nothing else: pages fetch
what they show through the scoped queries, as on any other request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from slices_blueprint.core.live import Change, notify_all
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks.models import Task


def change_of(row: Any) -> Change | None:
    """What a page needs to know of a written row to decide whether it concerns it."""
    if isinstance(row, ComputeResource):
        return {"resource": str(row.id), "project": row.project_id, "experiment": row.experiment_id,
                "created_by": row.created_by}
    if isinstance(row, Task):
        return {"task": str(row.id), "parent": str(row.parent_id) if row.parent_id else None,
                "experiment": row.experiment_id}
    return None


def changes_of(rows: Iterable[Any]) -> list[Change]:
    """The changes to announce for ``rows`` (the resources and tasks among them); rows written
    with SQLAlchemy Core, which the flush hook does not see, are announced with these
    (``core.live.NOTIFY_ALL``)."""
    return [c for row in rows if (c := change_of(row)) is not None]


def _announce(session: Session, _flush: UOWTransaction) -> None:
    notify_all(session.connection(), changes_of((*session.new, *session.dirty)))


def announce_changes() -> None:
    """Announce resource and task writes from every session of this process; idempotent."""
    if not event.contains(Session, "after_flush", _announce):
        event.listen(Session, "after_flush", _announce)
