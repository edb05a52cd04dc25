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
from dataclasses import dataclass, replace

import procrastinate
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.errors import database_unavailable
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.metrics import TASK_DURATION
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.credentials.drivers import driver_for
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import (
    AwaitingPlacement,
    ComputeDriver,
    NodeInfo,
    NodeSpec,
    ProviderError,
    TransientProviderError,
)
from slices_blueprint.providers.registry import driver_class
from slices_blueprint.resources import replacement, states
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
    pid = resource.provider_resource_id
    driver = await resource_driver(runtime, resource)
    progress = ProgressWriter(runtime.db, task.id)
    try:
        if task.kind == "create":
            return await driver.create(spec, progress)
        if task.kind == "delete":
            for node in [pid] if pid else await _unrecorded_nodes(driver, spec):
                await driver.delete(node, progress)
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


async def _unrecorded_nodes(driver: ComputeDriver, spec: NodeSpec) -> list[str]:
    """The provider's nodes tagged with this resource although none is recorded: a delete
    queued while the create was in flight (a resource whose create never started is deleted
    at once, without a job) finds the node a create left before it could record it (its
    worker killed, the database lost), which the create, cancelled by the delete, never will."""
    nodes = [n.provider_resource_id for n in await driver.list_managed() if n.resource_id == spec.resource_id]
    if nodes:
        log.warning("resource.unrecorded_node_deleted", resource_id=spec.resource_id, nodes=nodes)
    return nodes


@dataclass(frozen=True)
class Outcome:
    """How an operation ended: ``info`` the provider answered, or ``error``; a delete the
    provider failed is still ``possible_orphan``: done here (the name freed), the provider's
    object perhaps left behind for the reconciler and the operators."""

    info: NodeInfo | None = None
    error: str | None = None
    possible_orphan: bool = False


async def _finish(runtime: Runtime, queue: procrastinate.App, task_id: uuid.UUID, outcome: Outcome) -> None:
    async with runtime.db.session() as session:
        task = await session.get(Task, task_id, with_for_update=True)
        assert task is not None and task.resource_id is not None
        resource = await session.get(ComputeResource, task.resource_id, with_for_update=True)
        assert resource is not None
        info, error = outcome.info, outcome.error
        if info is not None:
            resource.provider_resource_id = info.provider_resource_id
            resource.access = info.access
            resource.provider_data = info.provider_data
        in_flight = resource.status == states.IN_FLIGHT[task.kind]
        if outcome.possible_orphan:
            await _deleted_despite(session, resource, task, error or "", in_flight)
        elif error is None:
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
        if task.kind == "delete" and resource.status == "deleted":  # the name is free
            await replacement.create_waiting(session, queue, task)
        result = "ok" if error is None else "possible_orphan" if outcome.possible_orphan else "error"
        await record(session, actor="system:worker", action=f"resource.{task.kind}",
                     outcome=result, resource_id=resource.id, task_id=task.id,
                     experiment_id=resource.experiment_id, project_id=resource.project_id, message=error,
                     provider=resource.provider, provider_resource_id=resource.provider_resource_id)


async def _deleted_despite(session: AsyncSession, resource: ComputeResource, task: Task, error: str,
                           in_flight: bool) -> None:
    """End a delete the provider failed (after its retries) as ``deleted``, so the name is
    free again; the provider object may remain: say so on the resource, in an audit event
    and a warning (the reconciler deletes it once the provider answers, see ``scheduled``)."""
    reason = (f"deleted here, but the {resource.provider} node {resource.provider_resource_id} may "
              f"remain: {error}")
    if in_flight:
        states.transition(resource, "deleted", reason)
        resource.deleted_at = utcnow()
    task.status, task.completed, task.message = "succeeded", 100, reason
    log.warning("resource.possible_orphan", resource_id=str(resource.id), provider=resource.provider,
                provider_resource_id=resource.provider_resource_id, error=error)
    await record(session, actor="system:worker", action="resource.possible_orphan", outcome="drift",
                 resource_id=resource.id, task_id=task.id, experiment_id=resource.experiment_id,
                 project_id=resource.project_id, message=reason, provider=resource.provider,
                 provider_resource_id=resource.provider_resource_id)


PLACEMENT_POLL_SECONDS = 2
"""How often a create waiting for a place (:class:`AwaitingPlacement`) is tried again."""


class RetryLater(Exception):
    """Raised by the operation job to be run again in ``seconds`` (see :class:`Backoff`)."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"retry in {seconds} s")
        self.seconds = seconds


DATABASE_RETRY_SECONDS = 2
"""When a job that lost the database (restarting, unreachable) runs again."""


class Backoff(procrastinate.BaseRetryStrategy):
    """Procrastinate's side of the retries: when to run the job again is decided by
    :func:`run_operation`, which counts the attempts that count (a wait for a place does not);
    a job that lost the database runs again a moment later (every step is safe to repeat)."""

    def get_retry_decision(self, *, exception: BaseException, job: procrastinate.jobs.Job
                           ) -> procrastinate.RetryDecision | None:
        if isinstance(exception, RetryLater):
            return procrastinate.RetryDecision(retry_in={"seconds": exception.seconds})
        if database_unavailable(exception):
            return procrastinate.RetryDecision(retry_in={"seconds": DATABASE_RETRY_SECONDS})
        return None


async def _retrying(runtime: Runtime, task: Task, spec: NodeSpec, exc: Exception, *, counted: bool) -> None:
    log.warning("task.retrying", task_id=str(task.id), resource_id=spec.resource_id, error=str(exc))
    async with runtime.db.session() as session:
        row = await session.get(Task, task.id)
        if row is not None:
            row.message = f"retrying after: {exc}"
            if not counted:
                row.attempts -= 1


async def run_operation(runtime: Runtime, queue: procrastinate.App, task_id: str) -> None:
    """Carry out one task. A transient provider error raises :class:`RetryLater` (backoff
    2, 4, 8... s) until ``task_max_attempts`` attempts were made; then it becomes the
    resource's error like any other. A create waiting for a place is tried again every
    ``PLACEMENT_POLL_SECONDS`` for ``placement_wait_seconds``, not counted as attempts. A
    delete the provider failed ends ``deleted`` all the same, as a possible orphan."""
    tid = uuid.UUID(task_id)
    started = await _start(runtime, tid)
    if started is None:
        return
    task, resource, spec = started
    settings = runtime.settings
    clock = time.monotonic()
    outcome = Outcome()
    try:
        outcome = Outcome(info=await _call_provider(runtime, task, resource, spec))
    except AwaitingPlacement as exc:
        waited = (utcnow() - (task.started_at or utcnow())).total_seconds()
        if waited < settings.placement_wait_seconds:
            await _retrying(runtime, task, spec, exc, counted=False)
            raise RetryLater(PLACEMENT_POLL_SECONDS) from exc
        outcome = Outcome(error=f"{exc} (none within {settings.placement_wait_seconds} s)")
    except TransientProviderError as exc:
        if task.attempts < settings.task_max_attempts:
            await _retrying(runtime, task, spec, exc, counted=True)
            raise RetryLater(2 ** task.attempts) from exc
        outcome = Outcome(error=f"{exc} (gave up after {task.attempts} attempts)",
                          possible_orphan=task.kind == "delete")
    except ProviderError as exc:
        outcome = Outcome(error=str(exc) or exc.__class__.__name__, possible_orphan=task.kind == "delete")
    except Exception as exc:  # a bug or an SDK surprise: the user still gets a final state
        if database_unavailable(exc):
            raise  # our database, not the provider: the job runs again (Backoff)
        log.exception("task.crashed", task_id=task_id, resource_id=spec.resource_id)
        outcome = Outcome(error=f"internal error while running {task.kind}: {exc.__class__.__name__}")
    await _finish(runtime, queue, tid, outcome)
    failed = outcome.error is not None and not outcome.possible_orphan
    TASK_DURATION.labels(kind=task.kind, provider=resource.provider, outcome="error" if failed else "ok"
                         ).observe(time.monotonic() - clock)


def register_jobs(app: procrastinate.App, runtime: Runtime) -> None:
    """The operation job: one lock per resource (given when deferred), retried as
    :func:`run_operation` decides (:class:`Backoff`)."""

    @app.task(name=OPERATION_JOB, queue=QUEUE, retry=Backoff())
    async def operation(task_id: str) -> None:
        await run_operation(runtime, app, task_id)

    del operation
