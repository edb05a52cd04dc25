"""Dashboard, create form, task progress and the resource page."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog import service as catalog
from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.deps import DatabaseDep, SessionDep, SettingsDep
from slices_blueprint.core.errors import Conflict, Invalid, NotFound, ProblemError
from slices_blueprint.core.ids import format_id, path_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.routing import page_router
from slices_blueprint.events.service import for_resource
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment, Project
from slices_blueprint.identity.service import names_of
from slices_blueprint.providers.registry import driver_class, enabled_types, offers
from slices_blueprint.quotas import service as quotas
from slices_blueprint.quotas.service import QuotaExceeded
from slices_blueprint.resources import plain_reads, service, states
from slices_blueprint.resources.logs import read_logs
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.tasks.models import Task
from slices_blueprint.tasks.service import task_out
from slices_blueprint.telemetry import service as telemetry
from slices_blueprint.web.charts import HEIGHT, WIDTH, chart_start, metric_charts
from slices_blueprint.web.deps import (
    UI,
    CsrfChecked,
    ExperimentDep,
    FormRejected,
    UserDep,
    redirect,
    render,
)
from slices_blueprint.web.forms import CreateForm, FieldErrors, fits, message_field
from slices_blueprint.web.quota_views import quota_rows
from slices_blueprint.web.reservation_banner import EXTEND_HOURS, ending_soon

router = page_router(UI)
EXTEND_CHOICES = (1, 4, 24, 72, 168)
Text = Annotated[str, Form()]


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, db: SessionDep, database: DatabaseDep, settings: SettingsDep,
                    caller: UserDep) -> HTMLResponse:
    """The user's projects and their quota usage, the experiment in use, its resources (live)."""
    usage = [await quotas.quota_out(db, settings, p) for p in sorted(caller.project_ids)]
    return render(request, "dashboard.html", caller=caller, projects=caller.token.claims.get("project_names") or {},
                  quotas=usage, rows_of=quota_rows, banners=await ending_soon(db, settings, caller),
                  extend_hours=EXTEND_HOURS, **await _table(database, db, settings, caller))


@router.get("/fragments/resources", response_class=HTMLResponse)
async def resources_table(request: Request, db: SessionDep, database: DatabaseDep, settings: SettingsDep,
                          caller: UserDep) -> HTMLResponse:
    """The resource table alone: polled by the dashboard."""
    return render(request, "fragments/resources.html", **await _table(database, db, settings, caller))


async def _table(database: Database, db: AsyncSession, settings: Settings, caller: Caller) -> dict:
    rows = await database.plain_read(  # the API's listing, 500 rows
        lambda conn: plain_reads.list_plain(conn, caller, include_deleted=False, status=None, limit=500, after=None))
    return {"resources": [service.resource_out(r, settings.site_id) for r in rows], "all_projects": caller.is_admin,
            **await _names(db, rows)}


async def _names(db: AsyncSession, rows: list[ComputeResource] | list[plain_reads.ResourceRow]) -> dict:
    """The names of the rows' experiments and projects, shown instead of their ids."""
    return {"experiment_names": await names_of(db, Experiment, {r.experiment_id for r in rows}),
            "project_names": await names_of(db, Project, {r.project_id for r in rows})}


async def _catalog(db: AsyncSession, settings: Settings, image_id: str) -> dict:
    """Images, and the flavors that fit the chosen image (all when none is chosen)."""
    images = await catalog.list_images(db, enabled_types(settings))
    flavors = await catalog.list_flavors(db, enabled_types(settings))
    chosen = next((i for i in images if format_id("image", settings.site_id, i.id) == image_id), None)
    if chosen is not None:
        flavors = [f for f in flavors if fits(chosen, f)]
    return {"images": images, "flavors": flavors, "chosen_image": chosen, "site": settings.site_id,
            "network_choice": chosen is not None and driver_class(chosen.flavor_type).chooses_networks}


async def _form_context(db: AsyncSession, settings: Settings, caller: Caller, user: Caller, form: CreateForm) -> dict:
    experiment = caller.require_experiment()
    cap = service.experiment_cap(settings, experiment)
    return {"form": form, "experiment": experiment, "cap": cap, "user_key": user.user and user.user.public_ssh_key,
            "max_hours": max(1, int((cap - utcnow()).total_seconds() // 3600)),
            **await _catalog(db, settings, form.image)}


@router.get("/resources/new", response_class=HTMLResponse)
async def new_resources(request: Request, db: SessionDep, settings: SettingsDep, caller: ExperimentDep, user: UserDep) -> HTMLResponse:
    return render(request, "create.html", errors={}, **await _form_context(db, settings, caller, user, CreateForm()))


@router.get("/fragments/flavors", response_class=HTMLResponse)
async def flavor_options(request: Request, db: SessionDep, settings: SettingsDep, user: UserDep, image: str = "", flavor: str = "") -> HTMLResponse:
    """The flavor picker for the chosen image (only flavors that fit it), and the fields that
    apply to the image's flavor type."""
    return render(request, "fragments/flavor_field.html", form=CreateForm(image=image, flavor=flavor), errors={},
                  swap_type_fields=True, **await _catalog(db, settings, image))


@router.post("/resources", dependencies=[CsrfChecked])
async def create_resources(
    request: Request, db: SessionDep, settings: SettingsDep, caller: ExperimentDep, user: UserDep,
    image: Text = "", flavor: Text = "", name: Text = "", count: Text = "1", networks: Text = "",
    public_ipv4: Text = "", ssh_keys: Text = "", userdata: Text = "", duration_hours: Text = "24", options: Text = "",
    request_id: Text = "",
) -> RedirectResponse:
    """Create resources as the API does; a rejected form comes back with its errors."""
    form = CreateForm(image=image, flavor=flavor, name=name.strip(), count=count.strip(), networks=networks,
                      public_ipv4=bool(public_ipv4), ssh_keys=ssh_keys, userdata=userdata,
                      duration_hours=duration_hours.strip(), options=options, request_id=request_id or CreateForm().request_id)
    try:
        body = form.to_request()
        batch, _ = await service.create_resources(db, settings, request.app.state.queue, caller, body, user.user)
    except FieldErrors as exc:
        raise FormRejected(request, "create.html", await _form_context(db, settings, caller, user, form), exc.errors) from exc
    except QuotaExceeded as exc:
        context = await _form_context(db, settings, caller, user, form)
        raise FormRejected(request, "create.html", context, {"count": exc.detail}) from exc
    except (Invalid, Conflict) as exc:  # raising rolls the request's transaction back
        where, message = ("name", exc.detail) if isinstance(exc, Conflict) else message_field(exc.detail)
        context = await _form_context(db, settings, caller, user, form)
        raise FormRejected(request, "create.html", context, {where: message}) from exc
    task = format_id("task", settings.site_id, batch.id)
    return redirect(request, f"{UI}/tasks/{task}", f"Requested {len(body.resources)} resource(s).")


async def own_task(db: AsyncSession, caller: Caller, task_id: str) -> Task:
    task = await db.get(Task, path_id(task_id, "task"))
    if task is None or task.experiment_id != caller.require_experiment().id:  # another's: 404 too
        raise NotFound("no such task")
    return task


async def _task_context(db: AsyncSession, settings: Settings, caller: Caller, task_id: str) -> dict:
    """The task, and the names of the resources its subtasks concern (shown instead of ids)."""
    task = await task_out(db, await own_task(db, caller, task_id), settings.site_id)
    ids = [path_id(sub.resource_id, "resource") for sub in task.subtasks if sub.resource_id]
    rows = await db.execute(select(ComputeResource.id, ComputeResource.friendly_name).where(ComputeResource.id.in_(ids)))
    names = {format_id("resource", settings.site_id, rid): name for rid, name in rows}
    return {"task": task, "names": names}


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(task_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: ExperimentDep) -> HTMLResponse:
    """A task's progress (live until it ends)."""
    return render(request, "task.html", **await _task_context(db, settings, caller, task_id))


@router.get("/fragments/tasks/{task_id}", response_class=HTMLResponse)
async def task_progress(task_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: ExperimentDep) -> HTMLResponse:
    return render(request, "fragments/task_progress.html", **await _task_context(db, settings, caller, task_id))


async def _resource_context(db: AsyncSession, settings: Settings, caller: Caller, resource_id: str) -> dict:
    resource = await service.get_resource(db, caller, path_id(resource_id, "resource"))
    actions = [a for a, (allowed, _) in states.ACTIONS.items() if resource.status in allowed and a != "delete"
               and (a not in states.POWER_ACTIONS or offers(resource.provider, a))]
    return {"r": service.resource_out(resource, settings.site_id), "row": resource, "actions": actions,
            **await _names(db, [resource]),
            "extend_choices": EXTEND_CHOICES, "confirm": CONSEQUENCES,
            "flavor": await db.get(Flavor, resource.flavor_id), "image": await db.get(DiskImage, resource.disk_image_id)}


@router.get("/resources/{resource_id}", response_class=HTMLResponse)
async def resource_page(resource_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """Addresses, the SSH command, actions, logs, task history and the audit trail."""
    context = await _resource_context(db, settings, caller, resource_id)
    row = context["row"]
    tasks = list(await db.scalars(select(Task).where(Task.resource_id == row.id).order_by(Task.created_at.desc()).limit(50)))
    banners = await ending_soon(db, settings, caller, row.reservation_id) if row.reservation_id else []
    return render(request, "resource.html", events=await for_resource(db, row.id), tasks=tasks,
                  banners=banners, extend_hours=EXTEND_HOURS,
                  logs=offers(row.provider, "logs") and row.provider_resource_id is not None,
                  metrics=driver_class(row.provider).reports_metrics, **context)


@router.get("/fragments/resources/{resource_id}", response_class=HTMLResponse)
async def resource_details(resource_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """The resource's live part: status, addresses, expiry, actions (polled while it changes)."""
    return render(request, "fragments/resource_details.html", **await _resource_context(db, settings, caller, resource_id))


@router.get("/fragments/resources/{resource_id}/logs", response_class=HTMLResponse)
async def resource_logs(resource_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """The last lines of the container's / VM's log, where the provider's driver has them."""
    resource = await service.get_resource(db, caller, path_id(resource_id, "resource"))
    try:
        text, error = await read_logs(db, settings, resource), None
    except ProblemError as exc:  # no node, no logs, or the provider failed: said in the page
        text, error = None, exc.detail
    return render(request, "fragments/logs.html", text=text, error=error)


@router.get("/fragments/resources/{resource_id}/metrics", response_class=HTMLResponse)
async def resource_metrics(resource_id: str, request: Request, db: SessionDep, caller: UserDep,
                           minutes: int = 30) -> HTMLResponse:
    """CPU, memory, network and disk charts of a microVM (polled by the resource page)."""
    resource = await service.get_resource(db, caller, path_id(resource_id, "resource"))
    minutes = max(1, min(minutes, 24 * 60))
    _, points = await telemetry.resource_points(db, resource, minutes)
    now = utcnow()
    start = chart_start(points, minutes, now)
    return render(request, "fragments/metrics.html", charts=metric_charts(points, start, now),
                  start=start, width=WIDTH, height=HEIGHT)


async def _locked(db: AsyncSession, caller: Caller, resource_id: str) -> ComputeResource:
    return await service.get_resource(db, caller, path_id(resource_id, "resource"), write=True)


@router.post("/resources/{resource_id}/extend", dependencies=[CsrfChecked], response_class=HTMLResponse)
async def extend(
    resource_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: ExperimentDep,
    hours: Text = "24",
) -> HTMLResponse:
    """Move the expiry later (capped at the experiment's, never earlier); answers the
    refreshed details."""
    if not hours.isdigit() or int(hours) not in EXTEND_CHOICES:
        raise Invalid(f"extend by one of {', '.join(map(str, EXTEND_CHOICES))} hours")
    resource = await _locked(db, caller, resource_id)
    granted = await service.extend(db, settings, caller, resource, utcnow() + dt.timedelta(hours=int(hours)))
    note = f"Expires {granted.granted:%Y-%m-%d %H:%M} UTC ({granted.reason})."
    return render(request, "fragments/resource_details.html", note=note, **await _resource_context(db, settings, caller, resource_id))


CONSEQUENCES = {
    "delete": "The resource and everything on its disk will be destroyed. This cannot be undone.",
    "reset": "The resource is rebuilt from its image: everything written to its disk since it was "
             "created is lost.",
    "stop": "The resource is powered off: running programs end and what is only in memory is lost. "
            "Its disk is kept; Start boots it again.",
}
"""The actions that lose data, so the UI asks first, and what each one loses."""


@router.get("/resources/{resource_id}/{action}", response_class=HTMLResponse)
async def confirm_action(resource_id: str, action: str, request: Request, db: SessionDep, settings: SettingsDep,
                         caller: ExperimentDep) -> HTMLResponse:
    """Ask before an action that loses data (delete, reset, stop)."""
    if action not in CONSEQUENCES:
        raise NotFound(f"no action {action!r} to confirm")
    resource = await service.get_resource(db, caller, path_id(resource_id, "resource"))
    return render(request, "confirm_action.html", r=service.resource_out(resource, settings.site_id),
                  action=action, consequence=CONSEQUENCES[action])


@router.post("/resources/{resource_id}/{action}", dependencies=[CsrfChecked])
async def act(resource_id: str, action: str, request: Request, db: SessionDep, caller: ExperimentDep) -> RedirectResponse:
    """Delete, reset, pause, resume, stop or start (as the API's routes do)."""
    if action not in states.ACTIONS:
        raise NotFound(f"no action {action!r}")
    resource = await _locked(db, caller, resource_id)
    await service.request_action(db, request.app.state.queue, resource, action, caller.actor, None)
    return redirect(request, f"{UI}/resources/{resource_id}", f"{action.capitalize()} of {resource.friendly_name} requested.")
