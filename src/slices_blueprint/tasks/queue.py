"""The Procrastinate app: the queue every domain's jobs run on. It retries stalled jobs and
runs the worker loop; the jobs themselves are registered by the domains that define them
(each domain's ``register_jobs``, listed in ``slices_blueprint.domains``).

Procrastinate keeps its jobs in PostgreSQL (its schema is created by our first migration),
so enqueueing joins the caller's transaction and any number of workers on any number of
machines share the queue safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import procrastinate
import procrastinate.worker
import structlog

from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.errors import database_unavailable
from slices_blueprint.core.runtime import Runtime

log = structlog.get_logger(__name__)

QUEUE = "operations"
STALLED_CHECK_SECONDS = 15
STALLED_AFTER_SECONDS = 30  # a worker that missed heartbeats this long is presumed dead
RECONNECT_SECONDS = (0.5, 5.0)  # a worker that lost the database tries again: first, at most

JobRegistrar = Callable[[procrastinate.App, Runtime], None]
"""A domain's ``register_jobs(app, runtime)``: adds its jobs (on ``QUEUE``) to the queue app."""


def cron_every(seconds: int) -> str:
    """A Procrastinate cron string for "every ``seconds``" (seconds are its 6th column)."""
    if seconds < 60:
        return f"* * * * * */{max(1, seconds)}"
    return f"*/{max(1, seconds // 60)} * * * *"


def build_queue(settings: Settings, db: Database, registrars: Iterable[JobRegistrar]) -> procrastinate.App:
    """The queue app with the stalled-job check and every registrar's jobs, bound to this
    process's settings and database."""
    runtime = Runtime(settings=settings, db=db)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db.url))

    @app.periodic(cron=cron_every(STALLED_CHECK_SECONDS), periodic_id="stalled")
    @app.task(name="sb:retry_stalled", queue=QUEUE, queueing_lock="sb:retry_stalled", pass_context=True)
    async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> None:
        await retry_stalled_jobs(context.app)

    del retry_stalled
    for register_jobs in registrars:
        register_jobs(app, runtime)
    return app


async def retry_stalled_jobs(queue: procrastinate.App) -> int:
    """Put back jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    stalled = list(await queue.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS))
    for job in stalled:
        log.warning("queue.stalled_job_retried", job_id=job.id, task=job.task_name)
        await queue.job_manager.retry_job(job)
    return len(stalled)


async def run_worker(queue: procrastinate.App, settings: Settings, *, name: str, install_signal_handlers: bool) -> None:
    """Work until cancelled (or signalled); first retry jobs a dead worker left behind.

    Procrastinate's worker stops when the database goes away (its listener, heartbeat or job
    fetch fails): it is started again here once the database answers, and the jobs it was
    running are put back at once. Only a signal (or cancelling) ends the work."""
    worker_options: dict[str, Any] = {
        "queues": [QUEUE],
        "name": name,
        "concurrency": settings.worker_concurrency,
        "install_signal_handlers": False,  # ours below: a stop ends the restarts too
        "update_heartbeat_interval": 5,
        "stalled_worker_timeout": STALLED_AFTER_SECONDS,
        "delete_jobs": "successful",
    }
    stop = asyncio.Event()
    pause = RECONNECT_SECONDS[0]
    with _stop_on_signals(stop) if install_signal_handlers else contextlib.nullcontext():
        while not stop.is_set():
            worker = procrastinate.worker.Worker(app=queue, **worker_options)
            started = time.monotonic()
            try:
                await retry_stalled_jobs(queue)
                log.info("worker.started", name=name, concurrency=settings.worker_concurrency)
                await _run_until(worker, stop)
                if stop.is_set():
                    return
                log.warning("worker.stopped_by_itself", name=name, restart_in=pause)  # e.g. its listener lost the database
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                log.warning("worker.database_lost", name=name, error=str(exc).strip().split("\n", 1)[0], retry_in=pause)
            if time.monotonic() - started > STALLED_AFTER_SECONDS:
                pause = RECONNECT_SECONDS[0]  # it had been working: a new outage
            await _wait(stop, pause)
            pause = min(pause * 2, RECONNECT_SECONDS[1])
            await _release_jobs_of(queue, worker)


async def _run_until(worker: procrastinate.worker.Worker, stop: asyncio.Event) -> None:
    """Run ``worker`` until it ends or ``stop`` is set (then stop it gracefully)."""
    running = asyncio.create_task(worker.run(), name="procrastinate worker")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            worker.stop()
        await running
    finally:
        stopping.cancel()
        if not running.done():  # we were cancelled: so is the worker (it stops gracefully)
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def _release_jobs_of(queue: procrastinate.App, worker: procrastinate.worker.Worker) -> None:
    """Unregister a worker that could not do so itself (the database was gone): the jobs it
    left ``doing`` (all of them ended: it waits for them before unregistering) become stalled
    jobs, retried at once by :func:`retry_stalled_jobs` instead of after the heartbeat timeout."""
    if worker.worker_id is None:
        return
    with contextlib.suppress(Exception):  # still unreachable: the heartbeat timeout frees them
        await queue.job_manager.unregister_worker(worker.worker_id)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while inside (the previous handlers come back after)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])
