"""Export an experiment as one file, plan the changes that make it match a file, and apply
them through the resources, qkd and reservations services (in the caller's transaction)."""

from __future__ import annotations

from importlib.metadata import version

import procrastinate
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import DiskImage
from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Invalid
from slices_blueprint.core.ids import format_id, new_uuid
from slices_blueprint.core.models import utcnow
from slices_blueprint.events.models import Event
from slices_blueprint.events.service import record
from slices_blueprint.experiments import live, plan
from slices_blueprint.experiments.schemas import (
    ExperimentFile,
    ExperimentRecord,
    PlanOut,
    ResourceEntry,
)
from slices_blueprint.identity.caller import Caller
from slices_blueprint.qkd import service as qkd
from slices_blueprint.qkd.schemas import LinkUpdate
from slices_blueprint.reservations import service as reservations
from slices_blueprint.reservations.schemas import ReservationAsk, ReservationCreate
from slices_blueprint.resources import service as resources
from slices_blueprint.resources.schemas import EventOut, ResourceSpec, ResourcesRequest
from slices_blueprint.tasks.models import Task

log = structlog.get_logger(__name__)


async def export(session: AsyncSession, caller: Caller) -> ExperimentFile:
    """The caller's experiment as one file."""
    return (await live.read(session, caller.require_experiment())).as_file()


async def make_plan(session: AsyncSession, caller: Caller, file: ExperimentFile) -> plan.Work:
    """What applying ``file`` would do; nothing is changed."""
    return await plan.make(session, file, await live.read(session, caller.require_experiment()))


def _spec(entry: ResourceEntry, flavor_id: str, image_id: str) -> ResourceSpec:
    return ResourceSpec(friendly_name=entry.name, flavor_id=flavor_id, disk_image_id=image_id, userdata=entry.userdata,
                        network_interfaces=entry.network_interfaces, public_ipv4=entry.public_ipv4,
                        ssh_authorized_keys=entry.ssh_authorized_keys, request_config=entry.request_config)


async def _resources(session: AsyncSession, settings: Settings, queue: procrastinate.App, caller: Caller,
                     file: ExperimentFile, work: plan.Work, state: live.LiveState) -> Task:
    """Delete what goes, create what is new, replace what changes (its create waits for
    its delete): one batch task over them."""
    experiment = caller.require_experiment()
    creator = caller.user.id if caller.user else None
    new, changed = set(work.named("resource", "create")), set(work.named("resource", "change"))

    def specs(names: set[str]) -> list[ResourceSpec]:
        return [_spec(e, format_id("flavor", settings.site_id, work.catalog[e.name][0]),
                      format_id("image", settings.site_id, work.catalog[e.name][1]))
                for e in file.resources if e.name in names]

    batch = None
    if new:
        batch, _ = await resources.create_resources(
            session, settings, queue, caller, ResourcesRequest(request_id=new_uuid(), resources=specs(new)),
            caller.user)
    if batch is None:
        batch = Task(id=new_uuid(), kind="batch", status="pending", completed=0, experiment_id=experiment.id,
                     created_by=creator, result={})
        session.add(batch)
        await session.flush()
    for name in work.named("resource", "delete"):
        row = await resources.get_resource(session, caller, state.resources[name][0].id, write=True)
        task = await resources.request_action(session, queue, row, "delete", caller.actor, creator)
        task.parent_id = batch.id
    if changed:
        old = [await resources.get_resource(session, caller, state.resources[name][0].id, write=True)
               for name in sorted(changed)]
        await resources.replace_resources(session, settings, queue, caller, batch, old, specs(changed), caller.user)
    batch.result = {"plan": work.plan.model_dump(mode="json")}
    return batch


async def _networks(session: AsyncSession, settings: Settings, caller: Caller, file: ExperimentFile,
                    work: plan.Work, state: live.LiveState) -> None:
    described = {d.name: d for d in file.qkd_networks}
    for name in work.named("qkd_network", "delete", "change"):
        if name in work.link_changes:
            for link, changes in work.link_changes[name].items():
                await qkd.update_link(session, state.networks[name][0], link, LinkUpdate(**changes), caller.actor)
            continue
        await qkd.delete_network(session, state.networks[name][0], caller.actor)
    await session.flush()
    for name in work.named("qkd_network", "create", "change"):
        if name not in work.link_changes:
            await qkd.create_network(session, settings, caller, described[name])


async def _reservations(session: AsyncSession, settings: Settings, queue: procrastinate.App, caller: Caller,
                        work: plan.Work, state: live.LiveState) -> None:
    for key in work.cancel:
        await reservations.cancel(session, queue, caller, state.reservations[key][0], "experiment apply")
    now = utcnow()
    for entry in work.reserve:
        ask = entry.model_dump(include=set(ReservationAsk.model_fields))
        start = entry.start if entry.start > now else None
        await reservations.create(session, settings, caller, ReservationCreate(
            **ask, starts_at=start, hours=entry.duration_hours))


async def apply(session: AsyncSession, settings: Settings, queue: procrastinate.App, caller: Caller,
                file: ExperimentFile) -> tuple[PlanOut, Task]:
    """Make the experiment match ``file`` in this transaction: reservations and QKD networks
    at once, resource operations as the subtasks of the batch task answered. A file naming a
    flavor or image this site lacks is refused (422, listing them) before anything changes."""
    experiment = caller.require_experiment()
    state = await live.read(session, experiment)
    work = await plan.make(session, file, state)
    if work.plan.missing:
        raise Invalid(f"this site lacks: {'; '.join(work.plan.missing)}", missing=work.plan.missing)
    await _reservations(session, settings, queue, caller, work, state)
    await _networks(session, settings, caller, file, work, state)
    batch = await _resources(session, settings, queue, caller, file, work, state)
    await record(session, actor=caller.actor, action="experiment.apply", outcome="requested", task_id=batch.id,
                 experiment_id=experiment.id, project_id=experiment.project_id,
                 steps=[f"{s.action} {s.kind} {s.name}" for s in work.plan.steps])
    log.info("experiment.applied", experiment_id=experiment.id, steps=len(work.plan.steps), task_id=str(batch.id))
    return work.plan, batch


async def run_record(session: AsyncSession, settings: Settings, caller: Caller) -> ExperimentRecord:
    """The file, the experiment's audit trail, and the run's metadata (who, when, site,
    version, the checksums or digests of the images in use) for an RO-Crate."""
    experiment = caller.require_experiment()
    file = await export(session, caller)
    events = await session.scalars(select(Event).where(Event.experiment_id == experiment.id).order_by(Event.id))
    locations = {r.image.location for r in file.resources}
    images = await session.scalars(select(DiskImage).where(DiskImage.location.in_(locations)).order_by(DiskImage.friendly_name))
    metadata = {
        "experiment_id": experiment.id, "project_id": experiment.project_id, "exported_by": caller.actor,
        "exported_at": utcnow().isoformat(), "site_id": settings.site_id, "slices_blueprint_version": version("slices-blueprint"),
        "images": [{"name": i.friendly_name, "flavor_type": i.flavor_type, "location": i.location} for i in images],
    }
    return ExperimentRecord(file=file, events=[EventOut.model_validate(e, from_attributes=True) for e in events],
                            metadata=metadata)
