"""slices-blueprint: run the service, a worker, a host agent; manage the database; and
talk to a running service as a client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slices_blueprint.agent.cli import agent_app
from slices_blueprint.cli import admin, client, dev, logs, remote, serving, settings_errors
from slices_blueprint.cli import experiment as experiment_cli
from slices_blueprint.cli import qkd as qkd_cli
from slices_blueprint.cli import reservations as reservations_cli

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None)  # plain help: rich's help renderer costs ~0.1 s a start
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic migrations).")
app.add_typer(db_app, name="db")
app.add_typer(dev.app, name="dev")
app.add_typer(admin.app, name="admin")
app.add_typer(agent_app, name="agent")
app.add_typer(qkd_cli.app, name="qkd")
app.add_typer(experiment_cli.app, name="experiment")
client.register(app)
logs.register(app)
remote.register(app)
app.command("wait-ready")(serving.wait_ready)
reservations_cli.register(app)

ReadyTimeout = serving.ReadyTimeout
DataDir = Annotated[Path | None, typer.Option("--data-dir", envvar="SLICES_BLUEPRINT_DATA_DIR", help="Where the embedded database and keys live.")]


DEV_MODE_ON = ("DEV MODE: tokens from `slices-blueprint dev token` are trusted and the user 'admin' "
               "is a site admin; only requests to localhost/127.0.0.1/[::1] are answered. "
               "Never put this service behind a proxy.")
DEV_MODE_OFF = ("dev mode is off: tokens must come from the trusted issuers (SLICES); "
                "for a local trial, start with `slices-blueprint serve --dev`")
GRACEFUL_SHUTDOWN_S = 5
"""How long a stopping ``serve`` waits for open requests: the pages' event streams never end
by themselves, so they are closed after this."""


def _settings(**overrides: object):
    from slices_blueprint.core.config import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000]")] = None,
    data_dir: DataDir = None,
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Run a worker inside the server.")] = True,
    dev: Annotated[bool, typer.Option("--dev", help="Dev mode: trust a local token issuer (`slices-blueprint dev token`) and run a local microVM host. Loopback only.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background and return once ready (log in the data directory).")] = False,
    timeout: ReadyTimeout = 120,
    workers: Annotated[int, typer.Option("--workers", min=1, help="API processes sharing the port (one per core; each keeps db_pool_size database sessions).")] = 1,
) -> None:
    """Run the API, the web UI and (by default) a worker."""
    settings = _settings(host=host, port=port, data_dir=data_dir, run_worker_in_serve=worker, dev_mode=dev or None)
    if detach:
        serving.start_detached(f"http://{_loopback(settings.host)}:{settings.port}", settings.data_dir / "serve.log", timeout)
        return
    import os

    import uvicorn

    from slices_blueprint.app import create_app, serve_environment
    from slices_blueprint.core.bootstrap import prepare
    from slices_blueprint.core.models import utcnow

    url = prepare(settings)
    typer.echo(f"slices-blueprint on {settings.service_url} (docs: {settings.service_url}/docs)")
    typer.echo(DEV_MODE_ON if settings.dev_mode else DEV_MODE_OFF)
    local_agent = _start_local_host(settings, url)
    if workers > 1:  # each process builds its app from the settings passed in its environment
        os.environ.update(serve_environment(settings, url))
        app_ = "slices_blueprint.app:app_from_environment"
    else:
        app_ = create_app(settings, url, tune_gc=True)
        if local_agent is not None:
            app_.state.local_host_since = utcnow()  # /readyz waits for it to register
    try:
        uvicorn.run(app_, factory=workers > 1, workers=workers, host=settings.host, port=settings.port, log_config=None,
                    access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    finally:
        if local_agent is not None:
            _stop_local_host(settings, local_agent)


def _loopback(host: str) -> str:
    """Where a client on this machine reaches a service listening on ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)


def _stop_local_host(settings, agent) -> None:
    """Stop the local agent, and say which of its VMs keep running and how to stop them."""
    from slices_blueprint.hosts.local import local_vms_running

    agent.terminate()
    agent.wait(10)
    left = local_vms_running(settings)
    if not left:
        typer.echo("local microVM host stopped")
        return
    names = ", ".join(f"{vm['name']} (ssh port {vm['ssh_port']}, pid {vm['pid']})" for vm in left)
    typer.echo(f"local microVM host stopped; its VMs keep running: {names}. The next `serve --dev` takes them "
               f"back; to stop them now: kill {' '.join(str(vm['pid']) for vm in left)} (or delete them "
               "with `slices-blueprint delete NAME` while the service runs)")


def _start_local_host(settings, database_url: str):
    """In dev mode, a local microVM host (the agent as a child process, enrolled with a
    one-time token minted here) unless turned off."""
    from slices_blueprint.hosts.local import (
        enrol_local_host,
        local_agent_port,
        local_host_problem,
        start_local_agent,
    )

    if not (settings.local_microvm_host and settings.dev_mode and "microvm" in settings.providers):
        return None
    if problem := local_host_problem():
        typer.echo(f"no local microVM host: {problem}")
        return None
    port = local_agent_port(settings)
    log = settings.data_dir / "agent" / "agent.log"
    typer.echo(f"local microVM host: agent on https://127.0.0.1:{port}, log in {log}")
    return start_local_agent(settings, enrol_local_host(settings, database_url), port)


@app.command()
def worker(
    data_dir: DataDir = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
    name: Annotated[str | None, typer.Option(help="Worker name in logs.")] = None,
) -> None:
    """Run a worker only (start as many as you like, on as many machines)."""
    import asyncio
    import socket

    from slices_blueprint.core.bootstrap import prepare
    from slices_blueprint.core.database import Database
    from slices_blueprint.domains import build_queue
    from slices_blueprint.events.service import limit_rate
    from slices_blueprint.tasks.queue import run_worker

    settings = _settings(data_dir=data_dir, worker_concurrency=concurrency)
    url = prepare(settings)

    async def main() -> None:
        db = Database(url)
        limit_rate(db, settings.audit_events_per_resource_per_minute)
        queue = build_queue(settings, db)
        async with queue.open_async():
            await run_worker(queue, settings, name=name or f"worker@{socket.gethostname()}", install_signal_handlers=True)
        await db.dispose()

    asyncio.run(main())


@app.command("kme-host")
def kme_host(data_dir: DataDir = None) -> None:
    """Run the KMEs of the QKD networks that listen on this machine (qkd_kme_host); for a
    site whose `serve` does not (qkd_kme_in_service = false)."""
    import asyncio

    from slices_blueprint.core.bootstrap import prepare
    from slices_blueprint.core.database import Database
    from slices_blueprint.core.runtime import Runtime
    from slices_blueprint.qkd.kme_host import KmeHost
    from slices_blueprint.qkd.metrics import serve_kme_metrics

    settings = _settings(data_dir=data_dir)
    url = prepare(settings)
    serve_kme_metrics(settings)

    async def main() -> None:
        db = Database(url)
        try:
            await KmeHost(Runtime(settings=settings, db=db)).run()
        finally:
            await db.dispose()

    asyncio.run(main())


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, revision: str = "head") -> None:
    """Apply migrations (the service also does this when it starts)."""
    from slices_blueprint.core import migrations
    from slices_blueprint.core.database import resolve_database_url

    settings = _settings(data_dir=data_dir)
    migrations.upgrade(resolve_database_url(settings), revision)
    typer.echo("database schema is up to date")


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Show the schema revision."""
    from slices_blueprint.core import migrations
    from slices_blueprint.core.database import resolve_database_url

    migrations.current(resolve_database_url(_settings(data_dir=data_dir)))


def main() -> None:
    """The ``slices-blueprint`` command."""
    settings_errors.run(app)


if __name__ == "__main__":
    main()
