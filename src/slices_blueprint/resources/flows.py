"""The resource lifecycle's worker side: the job that carries out one operation (create, delete, reset, pause, resume, stop, start)
on one resource, through the resource's provider driver.

Three short transactions: start (check the task is still to do, move the resource to its
in-flight state), the provider call (no transaction held; progress written as it comes),
finish (record the outcome). Safe to run again after a crash: a finished task is skipped
and drivers adopt a node that a killed worker had already created.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import procrastinate
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.metrics import TASK_DURATION
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.credentials.drivers import driver_for
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import (
    ComputeDriver,
    NodeInfo,
    NodeSpec,
    ProviderError,
    TransientProviderError,
)
from slices_blueprint.providers.registry import driver_class
from slices_blueprint.resources import states
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.provisioning import Machine, contributions
from slices_blueprint.tasks.models import Task
from slices_blueprint.tasks.queue import QUEUE
from slices_blueprint.tasks.service import OPERATION_JOB, TERMINAL

log = structlog.get_logger(__name__)


async def resource_driver(runtime: Runtime, resource: ComputeResource) -> ComputeDriver:
    """The driver for a resource, with its creator's credential (or the site's)."""
    async with runtime.db.session() as session:
        return await driver_for(session, runtime.settings, resource.provider, resource.created_by)


def node_spec(settings: Settings, resource: ComputeResource, flavor: Flavor, image: DiskImage) -> NodeSpec:
    config = resource.request_config or {}
    keys = list(config.get("ssh_authorized_keys") or [])
    if driver_class(resource.provider).takes_account_ssh_keys:
        keys = list(dict.fromkeys(keys + list(config.get("account_ssh_keys") or [])))
    return NodeSpec(
        resource_id=format_id("resource", settings.site_id, resource.id),
        name=resource.friendly_name,
        experiment_id=resource.experiment_id,
        project_id=resource.project_id,
        image_location=image.location,
        image_default_username=image.default_username,
        flavor_ref=flavor.provider_ref,
        vcpus=flavor.vcpus,
        ram_mib=flavor.ram_mib,
        disk_mb=flavor.disk_mb,
        ssh_authorized_keys=keys,
        userdata=config.get("userdata"),
        network_interfaces=list(config.get("network_interfaces") or []),
        public_ipv4=bool(config.get("public_ipv4")),
        config=dict(config.get("config") or {}),
    )


class ProgressWriter:
    """Writes a task's ``completed`` percentage, at most about once a second."""

    def __init__(self, db: Database, task_id: uuid.UUID) -> None:
        self.db, self.task_id = db, task_id
        self.last_write = 0.0
        self.last_percent = -1

    async def __call__(self, percent: int, message: str) -> None:
        percent = max(0, min(99, percent))
        now = time.monotonic()
        if percent <= self.last_percent or (now - self.last_write < 1.0 and percent - self.last_percent < 25):
            return
        self.last_write, self.last_percent = now, percent
        async with self.db.session() as session:
            task = await session.get(Task, self.task_id)
            if task is not None and task.status == "running":
                task.completed, task.message = percent, message


async def _start(runtime: Runtime, task_id: uuid.UUID) -> tuple[Task, ComputeResource, NodeSpec] | None:
    """Mark the task running; None when there is nothing (more) to do."""
    async with runtime.db.session() as session:
        task = await session.get(Task, task_id, with_for_update=True)
        if task is None or task.status in TERMINAL or task.resource_id is None:
            return None
        resource = await session.get(ComputeResource, task.resource_id, with_for_update=True)
        assert resource is not None
        expected = states.IN_FLIGHT[task.kind]
        if task.kind == "create" and resource.status == "pending":
            states.transition(resource, "provisioning")
        if resource.status != expected:
            task.status, task.finished_at = "cancelled", utcnow()
            task.message = f"cancelled: the resource became {resource.status} first"
            await record(session, actor="system:worker", action=f"resource.{task.kind}", outcome="cancelled",
                         resource_id=resource.id, task_id=task.id, experiment_id=resource.experiment_id,
                         message=task.message)
            return None
        task.status, task.attempts = "running", task.attempts + 1
        task.started_at = task.started_at or utcnow()
        task.message = f"{task.kind} started"
        flavor = await session.get(Flavor, resource.flavor_id)
        image = await session.get(DiskImage, resource.disk_image_id)
        assert flavor is not None and image is not None
        spec = node_spec(runtime.settings, resource, flavor, image)
        if task.kind in PROVISIONING:
            spec = await _with_contributions(session, runtime.settings, resource, task, spec)
    return task, resource, spec


PROVISIONING = frozenset({"create", "reset"})
"""The operations that (re)build a machine, and so place the contributed files in it."""


async def _with_contributions(session: AsyncSession, settings: Settings, resource: ComputeResource,
                              task: Task, spec: NodeSpec) -> NodeSpec:
    machine = Machine(resource_id=resource.id, resource_ref=spec.resource_id,
                      experiment_id=resource.experiment_id, name=resource.friendly_name,
                      provider=resource.provider,
                      forwards_services=driver_class(resource.provider).forwards_guest_services,
                      task_id=task.id)
    extra = await contributions(session, settings, machine)
    if extra.files or extra.services:
        log.info("resource.provisioning_contributed", resource_id=spec.resource_id,
                 files=[f.path for f in extra.files], services=[s.hostname for s in extra.services])
    return replace(spec, files=spec.files + extra.files, guest_services=spec.guest_services + extra.services)


async def _call_provider(runtime: Runtime, task: Task, resource: ComputeResource, spec: NodeSpec) -> NodeInfo | None:
    driver = await resource_driver(runtime, resource)
    progress = ProgressWriter(runtime.db, task.id)
    try:
        if task.kind == "create":
            return await driver.create(spec, progress)
        pid = resource.provider_resource_id
        if task.kind == "delete":
            if pid:
                await driver.delete(pid, progress)
            return None
        if pid is None:
            raise ProviderError(f"resource has no {resource.provider} node to {task.kind}")
        if task.kind == "reset":
            return await driver.reset(pid, spec, progress)
        if task.kind in states.POWER_ACTIONS:
            return await getattr(driver, task.kind)(pid)
        raise ProviderError(f"unknown operation {task.kind!r}")
    finally:
        await driver.close()


async def _finish(runtime: Runtime, task_id: uuid.UUID, info: NodeInfo | None, error: str | None) -> None:
    async with runtime.db.session() as session:
        task = await session.get(Task, task_id, with_for_update=True)
        assert task is not None and task.resource_id is not None
        resource = await session.get(ComputeResource, task.resource_id, with_for_update=True)
        assert resource is not None
        if info is not None:
            resource.provider_resource_id = info.provider_resource_id
            resource.access = info.access
            resource.provider_data = info.provider_data
        in_flight = resource.status == states.IN_FLIGHT[task.kind]
        if error is None:
            if in_flight:
                states.transition(resource, states.SUCCESS_STATE[task.kind])
            if task.kind == "delete":
                resource.deleted_at = utcnow()
            task.status, task.completed, task.message = "succeeded", 100, f"{task.kind} done"
        else:
            if in_flight:
                states.transition(resource, "error", error)
            task.status, task.error, task.message = "failed", error, f"{task.kind} failed"
        task.finished_at = utcnow()
        await record(session, actor="system:worker", action=f"resource.{task.kind}",
                     outcome="ok" if error is None else "error", resource_id=resource.id, task_id=task.id,
                     experiment_id=resource.experiment_id, project_id=resource.project_id, message=error,
                     provider=resource.provider, provider_resource_id=resource.provider_resource_id)


async def run_operation(runtime: Runtime, task_id: str, *, final_attempt: bool) -> None:
    """Carry out one task. A transient provider error is re-raised for a retry with backoff,
    unless this is the final attempt; then it becomes the resource's error like any other."""
    tid = uuid.UUID(task_id)
    started = await _start(runtime, tid)
    if started is None:
        return
    task, resource, spec = started
    clock = time.monotonic()
    info: NodeInfo | None = None
    error: str | None = None
    try:
        info = await _call_provider(runtime, task, resource, spec)
    except TransientProviderError as exc:
        if not final_attempt:
            log.warning("task.retrying", task_id=task_id, resource_id=spec.resource_id, error=str(exc))
            async with runtime.db.session() as session:
                row = await session.get(Task, tid)
                if row is not None:
                    row.message = f"retrying after: {exc}"
            raise
        error = f"{exc} (gave up after {task.attempts} attempts)"
    except ProviderError as exc:
        error = str(exc) or exc.__class__.__name__
    except Exception as exc:  # a bug or an SDK surprise: the user still gets a final state
        log.exception("task.crashed", task_id=task_id, resource_id=spec.resource_id)
        error = f"internal error while running {task.kind}: {exc.__class__.__name__}"
    await _finish(runtime, tid, info, error)
    TASK_DURATION.labels(kind=task.kind, provider=resource.provider, outcome="ok" if error is None else "error").observe(time.monotonic() - clock)


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The operation job: one lock per resource (given when deferred), a transient provider
    error retried with exponential backoff up to ``task_max_attempts``."""
    max_attempts = runtime.settings.task_max_attempts
    retry = procrastinate.RetryStrategy(
        max_attempts=max_attempts, exponential_wait=2, retry_exceptions={TransientProviderError}
    )

    @app.task(name=OPERATION_JOB, queue=QUEUE, retry=retry, pass_context=True)
    async def operation(context: procrastinate.JobContext, task_id: str) -> None:
        final = context.job.attempts + 1 >= max_attempts
        await run_operation(runtime, task_id, final_attempt=final)

    del operation
