"""API shape of a task (GET /tasks/{id})."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel


class TaskOut(BaseModel):
    id: str
    kind: str
    status: str  # pending | running | succeeded | failed | cancelled
    completed: int  # 0-100
    message: str | None
    error: str | None
    resource_id: str | None
    resource_ids: list[str]
    subtasks: list[TaskOut] = []
    result: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
