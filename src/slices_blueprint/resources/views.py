"""BI routes for compute resources. Writes need the experiment token; reads any token."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator

from fastapi import Query, Request, Response
from fastapi.responses import PlainTextResponse

from slices_blueprint.core.deps import BI_PREFIX, SessionDep, SettingsDep, read_only
from slices_blueprint.core.errors import (
    BODY_PROBLEMS,
    Conflict,
    RequestTimeout,
    TooManyRequests,
    problem_responses,
)
from slices_blueprint.core.ids import body_id, format_id, id_schema, path_id
from slices_blueprint.core.live import ChangeHub, Subscription
from slices_blueprint.core.responses import JSON, json_answer, json_items_answer
from slices_blueprint.core.routing import api_router
from slices_blueprint.events.service import for_resource
from slices_blueprint.identity.deps import CallerDep, ReadingCallerDep, identity_from_token
from slices_blueprint.identity.models import User
from slices_blueprint.resources import plain_reads, service, states
from slices_blueprint.resources.logs import read_logs
from slices_blueprint.resources.schemas import (
    EventOut,
    ExtendRequest,
    ExtendResult,
    ResourceOut,
    ResourcesRequest,
)
from slices_blueprint.tasks.schemas import TaskOut
from slices_blueprint.tasks.service import task_out

router = api_router(BI_PREFIX, "resources")
PER_RESOURCE = problem_responses(404, 422)  # another experiment's resource: 404 like a missing one


async def _body_user(request: Request, session: SessionDep, body: ResourcesRequest) -> User | None:
    """The user named by the id-token in the body (verified like any token)."""
    for token in body.tokens:
        _, user = await identity_from_token(request, session, token.jwt, expect="user")
        assert isinstance(user, User)
        return user
    return None


@router.post("/resources", response_model=TaskOut, status_code=202,
             responses=problem_responses(401, 403, *BODY_PROBLEMS))
async def create_resources(
    body: ResourcesRequest, request: Request, caller: ReadingCallerDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Create resources in the caller's experiment; answers the task to follow."""
    caller.require_experiment()
    user = await _body_user(request, session, body)
    batch, subtasks = await service.create_resources(session, settings, request.app.state.queue, caller, body, user)
    return json_answer(await task_out(session, batch, settings.site_id, subtasks), status_code=202)


@router.get("/resources", response_model=list[ResourceOut], responses=problem_responses(422))
async def list_resources(
    request: Request,
    caller: ReadingCallerDep,
    status: states.Status | None = None,
    include_deleted: bool = False,
    limit: int = Query(default=100, ge=1, le=1000),
    after: str | None = Query(default=None, description="the last id of the previous page",
                              json_schema_extra=id_schema("resource", or_empty=True)),
) -> Response:
    """The experiment's resources (experiment token), or the user's projects' (user token)."""
    after_id = body_id(after, "resource", "after") if after else None
    state = request.app.state
    site = state.settings.site_id
    page = await state.db.plain_read(  # no session: plain SQL, each row's JSON remembered
        lambda conn: plain_reads.list_shown(conn, caller, site, include_deleted=include_deleted, status=status,
                                            limit=limit, after=after_id))
    headers = {"X-Next-After": format_id("resource", site, page.last_id)} \
        if len(page.items) == limit and page.last_id else None
    return json_items_answer(page.items, headers=headers)


@router.get("/resources/{resource_id}", response_model=ResourceOut, responses=PER_RESOURCE)
async def get_resource(resource_id: str, request: Request, caller: ReadingCallerDep) -> Response:
    # the app's database and settings from the request: two dependencies fewer on the hottest read
    rid, state = path_id(resource_id, "resource"), request.app.state
    shown = await state.db.plain_read(lambda conn: plain_reads.read_shown(conn, caller, state.settings.site_id, rid))
    return Response(shown, media_type=JSON)


WAIT_FALLBACK_SECONDS = 5
"""How often a wait reads its resource again without being told of a change (a notification
lost while the listener reconnected, or another way of writing the row)."""
WAIT_POLL_SECONDS = 0.5
"""How often it reads it while this process's listener is not connected."""
WAIT_RETRY_AFTER_SECONDS = 5


class WaitSlots:
    """The waits running per experiment in this process (each holds a subscription)."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()

    @contextlib.contextmanager
    def take(self, experiment_id: str, limit: int) -> Iterator[None]:
        """Hold one of the experiment's ``limit`` slots; 429 with Retry-After when none is free."""
        if self.running[experiment_id] >= limit:
            raise TooManyRequests(
                f"{limit} waits on this experiment's resources are running; retry when one ends",
                limit=limit, headers={"Retry-After": str(WAIT_RETRY_AFTER_SECONDS)})
        self.running[experiment_id] += 1
        try:
            yield
        finally:
            self.running[experiment_id] -= 1
            if not self.running[experiment_id]:
                del self.running[experiment_id]


async def _changed_or_timeout(hub: ChangeHub, subscription: Subscription, deadline: float) -> None:
    """Return when the resource changed, at the next fallback read, or at the deadline."""
    fallback = WAIT_FALLBACK_SECONDS if hub.listening.is_set() else WAIT_POLL_SECONDS
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(subscription.changed.wait(), max(0.0, min(fallback, deadline - time.monotonic())))
    subscription.changed.clear()  # before reading: a change after this wakes the next wait


@router.get("/resources/{resource_id}/wait", response_model=ResourceOut,
            responses=problem_responses(404, 422, 429, described={
                408: "the timeout passed first (the problem names the status)",
                409: "the resource settled in another state"}))
async def wait_for_resource(
    resource_id: str, request: Request, caller: CallerDep, session: SessionDep, settings: SettingsDep,
    state: str | None = Query(default=None, description="the status to wait for; default: any settled one"),
    timeout: float = Query(default=60, gt=0, le=600, description="seconds"),
) -> ResourceOut:
    """Answer the resource once it is ``state`` (or settled). A settled resource in another
    state is a 409 naming it (e.g. ``error`` with its reason); the timeout is a 408. Woken by
    the change's notification (``core.live``), from whichever process made it."""
    rid = path_id(resource_id, "resource")
    hub: ChangeHub = request.app.state.changes
    async with hub.subscribe(lambda change: change.get("resource") == str(rid)) as subscription:
        resource = await service.get_resource(session, caller, rid)  # authorised once, here
        await session.commit()  # no connection or transaction is held while waiting
        deadline = time.monotonic() + timeout
        with request.app.state.wait_slots.take(resource.experiment_id, settings.max_waits_per_experiment):
            while True:
                if resource.status == state or (state is None and resource.status in states.FINAL):
                    return service.resource_out(resource, settings.site_id)
                if resource.status in states.FINAL:  # settled, but not as asked
                    reason = f": {resource.status_reason}" if resource.status_reason else ""
                    raise Conflict(f"resource {resource.friendly_name!r} is {resource.status}{reason}",
                                   current_status=resource.status)
                if time.monotonic() >= deadline:
                    raise RequestTimeout(
                        f"resource {resource.friendly_name!r} is still {resource.status} after {timeout:g} s",
                        current_status=resource.status)
                await _changed_or_timeout(hub, subscription, deadline)
                async with request.app.state.db.session() as poll:
                    resource = await service.get_resource(poll, caller, rid)


ACTIONS = {
    "delete": ("DELETE", "/resources/{resource_id}", "Delete a resource; deleting again answers the same task."),
    "reset": ("POST", "/resources/{resource_id}/reset", "Return the resource to its image's initial state."),
    "pause": ("POST", "/resources/{resource_id}/pause", "Pause a resource (409 when its provider cannot pause)."),
    "resume": ("POST", "/resources/{resource_id}/resume", "Resume a paused resource."),
    "stop": ("POST", "/resources/{resource_id}/stop", "Power a resource off, keeping its disk (409 when its provider cannot)."),
    "start": ("POST", "/resources/{resource_id}/start", "Boot a stopped resource again."),
}


def _action_route(action: str, method: str, path: str, doc: str) -> None:
    async def endpoint(resource_id: str, request: Request, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> TaskOut:
        resource = await service.get_resource(session, caller, path_id(resource_id, "resource"), write=True)
        created_by = caller.user.id if caller.user else None
        task = await service.request_action(session, request.app.state.queue, resource, action, caller.actor, created_by)
        return await task_out(session, task, settings.site_id)

    router.add_api_route(path, endpoint, methods=[method], response_model=TaskOut, status_code=202,
                         name=f"{action}_resource", summary=f"{action.capitalize()} resource",
                         description=doc, responses=PER_RESOURCE)


for _name, (_method, _path, _doc) in ACTIONS.items():
    _action_route(_name, _method, _path, _doc)


@router.post("/resources/{resource_id}/extend", response_model=ExtendResult,
             responses=problem_responses(404, *BODY_PROBLEMS))
async def extend_resource(
    resource_id: str, body: ExtendRequest, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> ExtendResult:
    """Move the expiry later (never earlier); answers what was granted and why: capped at
    the experiment's expiry, or unchanged when the current expiry is later than asked."""
    requested = body.requested()
    resource = await service.get_resource(session, caller, path_id(resource_id, "resource"), write=True)
    return service.extend_result(resource_id, await service.extend(session, settings, caller, resource, requested))


@router.get("/resources/{resource_id}/events", response_model=list[EventOut],
            responses=PER_RESOURCE)
@read_only
async def resource_events(resource_id: str, caller: CallerDep, session: SessionDep) -> list[EventOut]:
    """The audit trail of one resource, newest first."""
    resource = await service.get_resource(session, caller, path_id(resource_id, "resource"))
    return [EventOut.model_validate(e, from_attributes=True) for e in await for_resource(session, resource.id)]


@router.get("/resources/{resource_id}/logs", response_class=PlainTextResponse,
            responses=PER_RESOURCE)
async def resource_logs(
    resource_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep,
    tail: int = Query(default=200, ge=1, le=10000, description="last lines"),
) -> str:
    """The container log of a pod (where the cluster keeps logs), as plain text."""
    resource = await service.get_resource(session, caller, path_id(resource_id, "resource"))
    return await read_logs(session, settings, resource, tail)
