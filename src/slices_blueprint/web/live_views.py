"""Server-sent events telling an open page that what it shows changed (``core.live``).

The dashboard, a task's and a resource's page each keep one stream open (htmx's SSE
extension); on a ``changed`` event the page fetches its fragment again through the same
scoped route as before. A stream is opened only for what the viewer may see, is woken only
by changes to that, and carries no ids: nothing of another experiment's or project's rows
reaches a page, not even that they changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from slices_blueprint.core.ids import path_id
from slices_blueprint.core.live import Change, ChangeHub, Predicate
from slices_blueprint.identity.caller import Caller
from slices_blueprint.resources import service
from slices_blueprint.web.deps import UI, experiment_caller, user_caller
from slices_blueprint.web.resource_views import own_task

router = APIRouter(prefix=f"{UI}/live")
CHANGED = "changed"
RETRY_MS = 1000
"""How soon the browser reconnects a dropped stream."""


async def _viewer(request: Request) -> Caller:
    """The logged-in user, checked in a transaction of its own: a stream must not hold one open."""
    async with request.app.state.db.session() as db:
        return await user_caller(request, db)


Viewer = Annotated[Caller, Depends(_viewer)]


async def _stream(request: Request, wants: Predicate) -> AsyncIterator[ServerSentEvent]:
    """One ``changed`` event at once (what changed between the page's rendering and now),
    then one per wake-up, until the process stops listening."""
    hub: ChangeHub = request.app.state.changes
    async with hub.subscribe(wants) as subscription:
        yield ServerSentEvent(event=CHANGED, raw_data="connected", retry=RETRY_MS)
        while hub.running:
            await subscription.changed.wait()
            subscription.changed.clear()
            yield ServerSentEvent(event=CHANGED, raw_data="changed")


@router.get("/dashboard", response_class=EventSourceResponse)
async def dashboard_changes(request: Request, caller: Viewer) -> AsyncIterator[ServerSentEvent]:
    """Changes to the resources the dashboard lists (those the viewer may see)."""

    def wants(change: Change) -> bool:
        return "resource" in change and caller.sees(experiment_id=change["experiment"], project_id=change["project"],
                                                    created_by=change["created_by"])

    async for event in _stream(request, wants):
        yield event


async def _watched_resource(request: Request, resource_id: str, caller: Viewer) -> str:
    async with request.app.state.db.session() as db:
        resource = await service.get_resource(db, caller, path_id(resource_id, "resource"))
    return str(resource.id)


async def _watched_task(request: Request, task_id: str) -> str:
    async with request.app.state.db.session() as db:
        task = await own_task(db, await experiment_caller(request, db), task_id)
    return str(task.id)


@router.get("/resources/{resource_id}", response_class=EventSourceResponse)
async def resource_changes(request: Request, watched: Annotated[str, Depends(_watched_resource)]) -> AsyncIterator[ServerSentEvent]:
    """Changes to one resource the viewer may see."""
    async for event in _stream(request, lambda change: change.get("resource") == watched):
        yield event


@router.get("/tasks/{task_id}", response_class=EventSourceResponse)
async def task_changes(request: Request, watched: Annotated[str, Depends(_watched_task)]) -> AsyncIterator[ServerSentEvent]:
    """Changes to one of the experiment's tasks or to its subtasks."""
    async for event in _stream(request, lambda change: watched in (change.get("task"), change.get("parent"))):
        yield event
