"""Resource operations requested through the API (and by the reaper)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import procrastinate
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.cache import entry as catalog_entry
from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.config import Settings
from slices_blueprint.core.direct_sql import Writes
from slices_blueprint.core.errors import Conflict, Invalid, NotFound
from slices_blueprint.core.ids import body_id, format_id, new_uuid
from slices_blueprint.core.live import NOTIFY_ALL, payloads
from slices_blueprint.core.models import new_row, set_values, utcnow
from slices_blueprint.events.models import Event
from slices_blueprint.events.service import new_rows as new_events
from slices_blueprint.events.service import record
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment, User
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import driver_class, enabled_types, offers
from slices_blueprint.quotas.service import OVERRIDE_SQL, admit
from slices_blueprint.reservations.models import Reservation
from slices_blueprint.resources import replacement, reserved, states
from slices_blueprint.resources.changes import changes_of
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.schemas import (
    ExtendResult,
    ResourceOut,
    ResourceSpec,
    ResourcesRequest,
)
from slices_blueprint.tasks import service as tasks
from slices_blueprint.tasks.models import Task

if TYPE_CHECKING:
    from slices_blueprint.resources.plain_reads import ResourceRow


def resource_view(resource: ComputeResource | ResourceRow, site: str) -> dict[str, Any]:
    """The API view of a resource (an ORM row, or a :class:`ResourceRow` of the plain reads)
    as plain values, in :class:`ResourceOut`'s field order: what
    :func:`resource_out` is made of, and what the plain reads serialize as they are."""
    access = resource.access or {}
    return {
        "id": format_id("resource", site, resource.id),
        "friendly_name": resource.friendly_name,
        "experiment_id": resource.experiment_id,
        "project_id": resource.project_id,
        "created_by": resource.created_by,
        "flavor_id": format_id("flavor", site, resource.flavor_id),
        "disk_image_id": format_id("image", site, resource.disk_image_id),
        "flavor_type": resource.provider,
        "status": resource.status,
        "status_reason": resource.status_reason,
        "provider_resource_id": resource.provider_resource_id,
        "access": access,
        "ssh_command": ssh_command(access),
        "private_ipv4": private_ipv4(access),
        "console_url": access.get("console_url"),
        "expires_at": resource.expires_at,
        "reservation_id": format_id("reservation", site, resource.reservation_id) if resource.reservation_id else None,
        "created_at": resource.created_at,
        "updated_at": resource.updated_at,
    }


def resource_out(resource: ComputeResource | ResourceRow, site: str) -> ResourceOut:
    """The API view of a resource as its model, built without validation: every value comes
    from a column of the declared type."""
    return ResourceOut.model_construct(**resource_view(resource, site))


def private_ipv4(access: dict) -> str | None:
    """The resource's address on its own network (a floating address is not one)."""
    if "private_ipv4" in access:
        return access["private_ipv4"]
    ipv4 = access.get("ipv4")
    return ipv4 if ipv4 and ipv4 != access.get("floating_ip") else None


def ssh_command(access: dict) -> str | None:
    """The exact command to log in, when the provider told us enough."""
    host = access.get("ssh_host") or access.get("public_ipv4") or access.get("ipv4")
    if not host:
        return None
    user = access.get("ssh_user")
    port = access.get("ssh_port", 22)
    target = f"{user}@{host}" if user else host
    return f"ssh -p {port} {target}" if port != 22 else f"ssh {target}"


def experiment_cap(settings: Settings, experiment: Experiment) -> dt.datetime:
    """The latest expiry a resource of this experiment may have."""
    site_cap = utcnow() + dt.timedelta(days=settings.max_lifetime_days)
    return min(experiment.expires_at, site_cap) if experiment.expires_at else site_cap


def requested_expiry(settings: Settings, experiment: Experiment, requested: dt.datetime | None) -> dt.datetime:
    """The expiry of something new in the experiment: as requested (422 if past, or later
    than the experiment's cap), or the site's default lifetime, capped."""
    now = utcnow()
    cap = experiment_cap(settings, experiment)
    expires_at = requested or min(now + dt.timedelta(hours=settings.default_lifetime_hours), cap)
    if expires_at <= now:
        raise Invalid("expires_at: must be in the future")
    if expires_at > cap:
        raise Invalid(f"expires_at: must not exceed the experiment's expiry ({cap.isoformat()})")
    return expires_at


def _request_hash(body: ResourcesRequest) -> str:
    payload = body.model_dump_json(exclude={"tokens", "request_id"})
    return hashlib.sha256(payload.encode()).hexdigest()


def check_sizes(settings: Settings, spec: ResourceSpec, index: int) -> None:
    """Refuse (422, naming the limit) a userdata or request_config larger than the site allows."""
    userdata = len(spec.userdata.encode()) if spec.userdata else 0
    if userdata > settings.max_userdata_bytes:
        raise Invalid(f"resources.{index}.userdata: {userdata} bytes, more than the "
                      f"{settings.max_userdata_bytes} bytes this site allows",
                      limit=settings.max_userdata_bytes)
    config = len(json.dumps(spec.request_config, separators=(",", ":")).encode())
    if config > settings.max_request_config_bytes:
        raise Invalid(f"resources.{index}.request_config: {config} bytes as JSON, more than the "
                      f"{settings.max_request_config_bytes} bytes this site allows",
                      limit=settings.max_request_config_bytes)


async def _resolve_catalog(
    session: AsyncSession, settings: Settings, spec: ResourceSpec, index: int
) -> tuple[Flavor, DiskImage]:
    where = f"resources.{index}"
    flavor = await catalog_entry(session, Flavor, body_id(spec.flavor_id, "flavor", f"{where}.flavor_id"))
    image = await catalog_entry(session, DiskImage, body_id(spec.disk_image_id, "image", f"{where}.disk_image_id"))
    if flavor is None or flavor.hidden:
        raise Invalid(f"{where}.flavor_id: no such flavor {spec.flavor_id}")
    if image is None or image.hidden:
        raise Invalid(f"{where}.disk_image_id: no such disk image {spec.disk_image_id}")
    if flavor.flavor_type not in enabled_types(settings):
        raise Invalid(f"{where}.flavor_id: flavor type {flavor.flavor_type!r} is not offered by this site")
    if image.flavor_type != flavor.flavor_type:
        raise Invalid(f"{where}: image {image.friendly_name!r} is for {image.flavor_type}, flavor {flavor.friendly_name!r} is {flavor.flavor_type}")
    if image.min_ram_mib > flavor.ram_mib or (flavor.disk_mb and image.min_disk_mb > flavor.disk_mb):
        raise Invalid(f"{where}: image {image.friendly_name!r} needs {image.min_ram_mib} MiB RAM and {image.min_disk_mb} MB disk; flavor {flavor.friendly_name!r} has {flavor.ram_mib} MiB and {flavor.disk_mb} MB")
    try:
        driver_class(flavor.flavor_type).check_request_config(spec.request_config)
    except ProviderError as exc:
        raise Invalid(f"{where}.request_config: {exc}") from None
    return flavor, image


async def create_resources(
    session: AsyncSession,
    settings: Settings,
    queue: procrastinate.App,
    caller: Caller,
    body: ResourcesRequest,
    user: User | None,
) -> tuple[Task, list[Task] | None]:
    """Record every requested resource with its create task, all in one transaction; answer
    the batch task and its create tasks (None when the batch was recorded earlier).

    The same ``request_id`` answers the task recorded the first time; reusing it for a
    different request is a conflict. The batch is written first: its insert claims the
    request_id. The rest (resources, create tasks and their jobs, audit events, the change
    notification) is one statement (``core.direct_sql.Writes``).
    """
    experiment = caller.require_experiment()
    digest = _request_hash(body)
    creator = user.id if user else None
    batch = tasks.new_task(kind="batch", experiment_id=experiment.id, created_by=creator,
                           request_id=body.request_id, request_hash=digest)
    claim = Writes()
    claimed = tasks.claim_request(claim, batch)
    # the project's quota override read in the same round trip
    [(inserted, override)] = await claim.run(session, f"SELECT {claimed}, ({OVERRIDE_SQL})",
                                             quota_project_id=experiment.project_id)
    if not inserted:
        existing = await tasks.find_by_request(session, experiment.id, body.request_id)
        assert existing is not None
        if existing.request_hash != digest:
            raise Conflict(f"request_id {body.request_id} was used for a different request")
        return existing, None
    resources, resolved, placement = await _new_resources(session, settings, caller, body, user, override or {})
    subtasks = [tasks.new_task(kind="create", experiment_id=experiment.id, created_by=creator,
                               resource_id=resource.id, parent_id=batch.id) for resource in resources]
    writes = Writes()
    writes.insert("new_resources", ComputeResource.__table__, [set_values(resource) for resource in resources])
    tasks.insert_deferring(writes, queue, subtasks, placement.not_before)
    writes.insert("new_events", Event.__table__, new_events(actor=caller.actor, action="resource.create",
                                                            outcome="requested", events=[
        {"resource_id": resource.id, "task_id": task.id, "experiment_id": experiment.id,
         "project_id": experiment.project_id, "name": resource.friendly_name, "flavor": flavor.friendly_name,
         "image": image.friendly_name, "reservation": body.reservation_id, "message": placement.reason}
        for resource, task, (flavor, image) in zip(resources, subtasks, resolved, strict=True)]))
    try:
        await writes.run(session, NOTIFY_ALL, payloads=payloads(changes_of([batch, *resources, *subtasks])))
    except IntegrityError as exc:
        raise _conflict(exc, body) from exc
    return batch, subtasks


async def replace_resources(session: AsyncSession, settings: Settings, queue: procrastinate.App, caller: Caller,
                            batch: Task, old: Sequence[ComputeResource], specs: Sequence[ResourceSpec],
                            user: User | None) -> None:
    """Delete each of ``old`` (locked) and create its namesake of ``specs`` once the delete is
    done (:mod:`.replacement`): both subtasks of ``batch``. Checked and admitted now."""
    rows, _, _ = await _new_resources(session, settings, caller,
                                      ResourcesRequest(request_id=new_uuid(), resources=list(specs)), user)
    by_name = {r.friendly_name: r for r in rows}
    for resource in old:
        task = await request_action(session, queue, resource, "delete", caller.actor, user.id if user else None)
        task.parent_id = batch.id
        if resource.status == "deleted":  # nothing had been made: the name is free at once
            await session.flush()
            await replacement.create(session, queue, by_name[resource.friendly_name], caller.actor, batch.id)
        else:
            replacement.after_delete(task, by_name[resource.friendly_name], caller.actor)


async def _new_resources(session: AsyncSession, settings: Settings, caller: Caller, body: ResourcesRequest,
                         user: User | None, quota_override: dict | None = None,
                         ) -> tuple[list[ComputeResource], list[tuple[Flavor, DiskImage]], reserved.Placement]:
    """The rows of the resources ``body`` asks for, checked, admitted (``quota_override``: the
    project's, if read already) and placed (not added)."""
    experiment = caller.require_experiment()
    expires_at = requested_expiry(settings, experiment, body.expires_at)
    for i, spec in enumerate(body.resources):
        check_sizes(settings, spec, i)
    resolved = [await _resolve_catalog(session, settings, spec, i) for i, spec in enumerate(body.resources)]
    await admit(session, settings, experiment.project_id, [flavor for flavor, _ in resolved], quota_override)
    placement = await reserved.place(session, caller, settings.site_id, body.reservation_id,
                                     [flavor for flavor, _ in resolved], expires_at, body.expires_at is not None,
                                     experiment_cap(settings, experiment))
    account_keys = [user.public_ssh_key] if user and user.public_ssh_key else []
    creator = user.id if user else None
    now = utcnow()
    resources = [
        new_row(
            ComputeResource,
            id=new_uuid(),
            experiment_id=experiment.id,
            project_id=experiment.project_id,
            created_by=creator,
            friendly_name=spec.friendly_name,
            flavor_id=flavor.id,
            disk_image_id=image.id,
            provider=flavor.flavor_type,
            status="pending",
            status_reason=placement.reason,
            reservation_id=placement.reservation.id if placement.reservation else None,
            request_config={
                "userdata": spec.userdata,
                "network_interfaces": spec.network_names(),
                "public_ipv4": spec.public_ipv4,
                "ssh_authorized_keys": spec.ssh_authorized_keys,
                "account_ssh_keys": account_keys,
                "config": spec.request_config,
            },
            access={},
            provider_data={},
            expires_at=placement.expires_at,
            created_at=now,
            updated_at=now,
        )
        for spec, (flavor, image) in zip(body.resources, resolved, strict=True)
    ]
    return resources, resolved, placement


def _conflict(exc: IntegrityError, body: ResourcesRequest) -> Conflict:
    """The 409 for a unique-constraint clash while recording a request."""
    detail = str(exc.orig)
    if "uq_compute_resources_live_name" in detail:
        match = next((s.friendly_name for s in body.resources if f"{s.friendly_name})" in detail), None)
        name = f" named {match!r}" if match else " with one of these names"
        return Conflict(f"a live resource{name} exists in this experiment")
    raise exc


def scoped_query(caller: Caller) -> Select[tuple[ComputeResource]]:
    """Resources the caller may see (``Caller.visible``)."""
    return caller.visible(select(ComputeResource), experiment_id=ComputeResource.experiment_id,
                          project_id=ComputeResource.project_id, created_by=ComputeResource.created_by)


async def get_resource(session: AsyncSession, caller: Caller, resource_id: uuid.UUID, *, write: bool = False) -> ComputeResource:
    """One resource the caller may see (and change, with ``write``: only its experiment).

    A resource the caller may not see is "no such resource", exactly as a missing one: the
    answer tells nothing about other experiments' resources."""
    query = scoped_query(caller).where(ComputeResource.id == resource_id)
    if write:
        query = query.with_for_update()
    resource = await session.scalar(query)
    if resource is None:
        raise NotFound("no such resource")
    if write:
        caller.require_experiment()  # a user token sees its projects' resources but changes none
    return resource


async def request_action(
    session: AsyncSession, queue: procrastinate.App, resource: ComputeResource, action: str, actor: str, created_by: str | None
) -> Task:
    """Start ``action`` (delete, reset, pause, resume, stop, start) on a locked resource;
    answer its task.

    Deleting a resource that is being deleted, or is deleted, answers the existing task.
    Deleting one the provider never made a node for (its create failed, or has not started)
    is done at once: nothing is asked of the provider, and the name is free again. An action
    the resource's provider does not offer (pausing a pod) is refused with 409 and leaves the
    resource as it was.
    """
    if action == "delete" and resource.status in ("deleting", "deleted"):
        existing = await tasks.latest_task_for(session, resource.id, "delete")
        if existing is not None:
            return existing
    if action in states.POWER_ACTIONS and not offers(resource.provider, action):
        raise Conflict(f"cannot {action} {resource.friendly_name!r}: "
                       f"{resource.provider} resources have no {action}", current_status=resource.status)
    done = action == "delete" and not resource.provider_resource_id and resource.status in NOTHING_IN_FLIGHT
    states.start_action(resource, action)
    if done:
        states.transition(resource, "deleted")
        resource.deleted_at = utcnow()
        task = tasks.done_at_once(session, kind="delete", resource=resource, created_by=created_by,
                                  message=f"delete done: no {resource.provider} node had been made")
    else:
        task = await tasks.enqueue_operation(session, queue, kind=action, resource=resource, created_by=created_by)
    await record(session, actor=actor, action=f"resource.{action}", outcome="ok" if done else "requested",
                 resource_id=resource.id, task_id=task.id, experiment_id=resource.experiment_id,
                 project_id=resource.project_id)
    return task


NOTHING_IN_FLIGHT = frozenset({"pending", "error"})
"""States in which no operation can be making a provider node: a create not yet started (it
will find the resource gone and cancel itself), or one that ended."""


@dataclass(frozen=True)
class Extension:
    """What an extend granted: never earlier than the expiry was, and why (``reason``)."""

    requested: dt.datetime
    granted: dt.datetime
    capped: bool
    reason: str


def grant_extension(settings: Settings, experiment: Experiment, current: dt.datetime,
                    requested: dt.datetime, reservation_end: dt.datetime | None = None) -> Extension:
    """A later expiry, never earlier: max(current, min(requested, cap)), the cap being the
    experiment's expiry (or the site's longest lifetime, or the end of the reservation it
    runs inside), and why."""
    if requested <= utcnow():
        raise Invalid("expires_at: must be in the future")
    cap = experiment_cap(settings, experiment)
    if reservation_end is not None and reservation_end < cap:
        cap = reservation_end
    granted = max(current, min(requested, cap))
    if granted == current and requested != current:
        reason = f"the current expiry {_when(current)} is later than asked: unchanged"
        if requested > current:  # the cap is earlier than the current expiry (the experiment's moved)
            reason = (f"{_cap_reason(experiment, cap, reservation_end)}, earlier than the current expiry "
                      f"{_when(current)}: unchanged")
    elif granted < requested:
        reason = _cap_reason(experiment, cap, reservation_end)
    else:
        reason = "as asked"
    return Extension(requested=requested, granted=granted, capped=granted < requested, reason=reason)


def extend_result(object_id: str, extension: Extension) -> ExtendResult:
    """The API's answer to an extend."""
    return ExtendResult(id=object_id, requested_expires_at=extension.requested, expires_at=extension.granted,
                        capped=extension.capped, reason=extension.reason)


async def extend(
    session: AsyncSession, settings: Settings, caller: Caller, resource: ComputeResource, requested: dt.datetime
) -> Extension:
    """Move the resource's expiry later, never earlier (:func:`grant_extension`)."""
    if resource.status in ("deleting", "deleted"):
        raise Conflict(f"resource {resource.friendly_name!r} is {resource.status}")
    return await extend_expiry(session, settings, caller, resource, requested, action="resource.extend")


class Expiring(Protocol):
    """Something of an experiment with an expiry, perhaps inside a reservation."""

    id: uuid.UUID
    experiment_id: str
    project_id: str
    expires_at: dt.datetime
    reservation_id: uuid.UUID | None


async def extend_expiry(session: AsyncSession, settings: Settings, caller: Caller, row: Expiring,
                        requested: dt.datetime, *, action: str) -> Extension:
    """Set ``row``'s expiry as :func:`grant_extension` grants it, and record ``action``."""
    current = row.expires_at
    extension = grant_extension(settings, caller.require_experiment(), current, requested,
                                await reservation_end(session, row.reservation_id))
    row.expires_at = extension.granted
    await record(session, actor=caller.actor, action=action,
                 outcome="ok" if extension.granted != current else "unchanged", resource_id=row.id,
                 experiment_id=row.experiment_id, project_id=row.project_id,
                 requested=requested.isoformat(), granted=extension.granted.isoformat(), message=extension.reason)
    return extension


async def follow_reservation(session: AsyncSession, settings: Settings, rows: Sequence[Expiring],
                             reservation: Reservation, old_end: dt.datetime, actor: str, *,
                             action: str) -> list[Expiring]:
    """Move the expiry of ``rows`` (inside ``reservation``) that was its old end ``old_end``
    to its new end, capped at each one's experiment's (never earlier than it was); record
    ``action`` for each moved, and answer them."""
    moved = []
    for row in rows:
        if row.expires_at != old_end:
            continue
        experiment = await session.get(Experiment, row.experiment_id)
        granted = min(reservation.ends_at, experiment_cap(settings, experiment)) if experiment else reservation.ends_at
        if granted <= row.expires_at:
            continue
        row.expires_at = granted
        await record(session, actor=actor, action=action, outcome="ok", resource_id=row.id,
                     experiment_id=row.experiment_id, project_id=row.project_id, previous=old_end.isoformat(),
                     granted=granted.isoformat(), message=f"its reservation was extended: expires {_when(granted)}")
        moved.append(row)
    return moved


async def reservation_end(session: AsyncSession, reservation_id: uuid.UUID | None) -> dt.datetime | None:
    """The end of the reservation something runs inside (None: it runs inside none)."""
    reservation = await session.get(Reservation, reservation_id) if reservation_id else None
    return reservation.ends_at if reservation else None


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _cap_reason(experiment: Experiment, cap: dt.datetime, reservation_end: dt.datetime | None) -> str:
    if reservation_end is not None and cap == reservation_end:
        return f"capped at the end of its reservation {_when(cap)}"
    if experiment.expires_at is not None and cap >= experiment.expires_at:
        return f"capped at the experiment's expiry {_when(cap)}"
    return f"capped at the site's longest lifetime ({_when(cap)})"
