"""Server-sent events telling an open page that what it shows changed (``core.live``).

The dashboard, a task's and a resource's page each keep one stream open (htmx's SSE
extension); on a ``changed`` event the page fetches its fragment again through the same
scoped route as before. A stream is opened only for what the viewer may see, is woken only
by changes to that, and carries no ids: nothing of another experiment's or project's rows
reaches a page, not even that they changed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from slices_blueprint.core.ids import path_id
from slices_blueprint.core.live import ChangeHub, Predicate
from slices_blueprint.core.routing import page_router
from slices_blueprint.identity.caller import Caller
from slices_blueprint.resources import service
from slices_blueprint.web.deps import UI, experiment_caller, user_caller
from slices_blueprint.web.resource_views import own_task

router = page_router(f"{UI}/live")
CHANGED = "changed"
RETRY_MS = 1000
"""How soon the browser reconnects a dropped stream."""


@dataclass(frozen=True)
class Watch:
    """What a stream is woken by, and until when the login it was opened with holds."""

    wants: Predicate
    ends_at: float  # the token's expiry (epoch seconds)

    @classmethod
    def of(cls, caller: Caller, wants: Predicate) -> Watch:
        return cls(wants, float(caller.token.claims.get("exp", math.inf)))


async def _viewer(request: Request) -> Caller:
    """The logged-in user, checked in a transaction of its own: a stream must not hold one open."""
    async with request.app.state.db.session() as db:
        return await user_caller(request, db)


Viewer = Annotated[Caller, Depends(_viewer)]


async def _stream(request: Request, watch: Watch) -> AsyncIterator[ServerSentEvent]:
    """One ``changed`` event at once (what changed between the page's rendering and now),
    then one per wake-up; at the login's expiry a last one (the page's fetch then renews the
    login, or takes the user to log in) and the stream ends (the browser opens a new one)."""
    hub: ChangeHub = request.app.state.changes
    async with hub.subscribe(watch.wants) as subscription:
        yield ServerSentEvent(event=CHANGED, raw_data="connected", retry=RETRY_MS)
        while hub.running:
            try:
                await asyncio.wait_for(subscription.changed.wait(), max(0.0, watch.ends_at - time.time()))
            except TimeoutError:
                yield ServerSentEvent(event=CHANGED, raw_data="login expired")
                return
            subscription.changed.clear()
            yield ServerSentEvent(event=CHANGED, raw_data="changed")


def _dashboard_watch(caller: Viewer) -> Watch:
    """The resources the dashboard lists: those the viewer may see."""
    return Watch.of(caller, lambda change: "resource" in change and caller.sees(
        experiment_id=change["experiment"], project_id=change["project"], created_by=change["created_by"]))


async def _resource_watch(request: Request, resource_id: str, caller: Viewer) -> Watch:
    """One resource the viewer may see."""
    async with request.app.state.db.session() as db:
        watched = str((await service.get_resource(db, caller, path_id(resource_id, "resource"))).id)
    return Watch.of(caller, lambda change: change.get("resource") == watched)


async def _task_watch(request: Request, task_id: str) -> Watch:
    """One of the experiment's tasks and its subtasks."""
    async with request.app.state.db.session() as db:
        caller = await experiment_caller(request, db)
        watched = str((await own_task(db, caller, task_id)).id)
    return Watch.of(caller, lambda change: watched in (change.get("task"), change.get("parent")))


@router.get("/dashboard", response_class=EventSourceResponse)
async def dashboard_changes(request: Request, watch: Annotated[Watch, Depends(_dashboard_watch)]) -> AsyncIterator[ServerSentEvent]:
    async for event in _stream(request, watch):
        yield event


@router.get("/resources/{resource_id}", response_class=EventSourceResponse)
async def resource_changes(request: Request, watch: Annotated[Watch, Depends(_resource_watch)]) -> AsyncIterator[ServerSentEvent]:
    async for event in _stream(request, watch):
        yield event


@router.get("/tasks/{task_id}", response_class=EventSourceResponse)
async def task_changes(request: Request, watch: Annotated[Watch, Depends(_task_watch)]) -> AsyncIterator[ServerSentEvent]:
    async for event in _stream(request, watch):
        yield event
