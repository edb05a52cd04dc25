"""The FastAPI application: BI API, our own API, health, metrics, docs, and (in ``serve``)
the worker running beside it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import func, select, text

from slices_blueprint import __version__, domains
from slices_blueprint.catalog.cache import CatalogCache, use_cache
from slices_blueprint.catalog.scheduled import request_catalog_sync
from slices_blueprint.core import dev_issuer
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.deps import BI_PREFIX
from slices_blueprint.core.dev_guard import LoopbackHostOnly
from slices_blueprint.core.errors import install_error_handlers
from slices_blueprint.core.gc_tuning import tune_collector
from slices_blueprint.core.live import ChangeHub
from slices_blueprint.core.logging import configure_logging
from slices_blueprint.core.metrics import (
    HOST_STATES,
    RESOURCE_STATES,
    install_metrics,
    refresh_registered,
)
from slices_blueprint.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from slices_blueprint.core.nul_guard import RefuseNul
from slices_blueprint.core.routing import add_routes
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.core.security import TokenVerifier
from slices_blueprint.events.service import limit_rate
from slices_blueprint.hosts.local import LOCAL_HOST
from slices_blueprint.hosts.models import Host
from slices_blueprint.identity.deps import identity_cache
from slices_blueprint.qkd.kme_host import KmeHost
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.views import WaitSlots
from slices_blueprint.tasks.queue import run_worker
from slices_blueprint.web.deps import UI, install_web, templates
from slices_blueprint.web.views import PAGE_ROUTERS

log = structlog.get_logger(__name__)


def api_routers() -> list[APIRouter]:
    """Every domain's API router, in one place (the web UI's routers come after them)."""
    from slices_blueprint.catalog.views import admin_router as catalog_admin
    from slices_blueprint.catalog.views import router as catalog
    from slices_blueprint.core.dev_views import router as dev
    from slices_blueprint.credentials.views import router as credentials
    from slices_blueprint.experiments.views import router as experiments
    from slices_blueprint.hosts.views import router as hosts
    from slices_blueprint.qkd.views import router as qkd
    from slices_blueprint.quotas.views import router as quotas
    from slices_blueprint.reservations.views import router as reservations
    from slices_blueprint.resources.views import router as resources
    from slices_blueprint.tasks.views import router as tasks
    from slices_blueprint.telemetry.views import router as telemetry

    # routes are matched in this order (each a regular expression, tried one after another):
    # the busiest first
    return [
        resources, catalog, tasks, experiments,
        catalog_admin, qkd, telemetry, credentials, hosts, quotas, reservations, dev
    ]


def create_app(settings: Settings, database_url: str, *, run_worker_inside: bool | None = None,
               tune_gc: bool = False) -> FastAPI:
    """Build the app for an already-migrated database at ``database_url``; ``tune_gc``: the
    process is the app's own (``serve``), set its garbage collector for serving
    (:mod:`.core.gc_tuning`)."""
    with_worker = settings.run_worker_in_serve if run_worker_inside is None else run_worker_inside
    domains.wire()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(database_url, pool_size=settings.db_pool_size)
        queue = domains.build_queue(settings, db)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        static = {settings.dev_issuer: dev_issuer.dev_keyset(settings)} if settings.dev_mode else {}
        limit_rate(db, settings.audit_events_per_resource_per_minute)
        catalog_cache = CatalogCache()
        use_cache(db, catalog_cache)
        app.state.catalog_cache = catalog_cache
        app.state.settings, app.state.db, app.state.queue = settings, db, queue
        app.state.changes = ChangeHub(db.url)  # the pages' live updates: one LISTEN connection
        app.state.changes.start()
        app.state.verifier = TokenVerifier(settings=settings, http=http, static_issuers=static)
        app.state.identities = identity_cache()
        app.state.admin_ids = set(settings.admin_user_ids)
        if settings.dev_mode:
            app.state.admin_ids.add(dev_issuer.dev_ids("admin", "-", None)["user"])
        background: list[asyncio.Task] = []
        async with queue.open_async():
            background.append(asyncio.create_task(catalog_cache.listen(db.url)))
            if with_worker:
                name = f"serve@{socket.gethostname()}"
                background.append(asyncio.create_task(
                    run_worker(queue, settings, name=name, install_signal_handlers=False)))
            if settings.qkd_kme_in_service:
                background.append(asyncio.create_task(KmeHost(Runtime(settings=settings, db=db)).run()))
            await request_catalog_sync(queue)  # whichever worker comes first imports the catalogs
            if tune_gc:
                tune_collector()
            log.info("service.started", url=settings.service_url, dev_mode=settings.dev_mode, worker=with_worker, site=settings.site_id)
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        await app.state.changes.stop()
        await http.aclose()
        await db.dispose()

    app = FastAPI(
        title="slices-blueprint",
        version=__version__,
        summary="SLICES BI site: OpenStack VMs, Kubernetes pods and microVMs for SLICES experiments",
        lifespan=lifespan,
        openapi_url=f"{BI_PREFIX}/openapi.json",
        docs_url=None,  # our own page below: vendored Swagger UI, no CDN, no inline script
        redoc_url=None,
    )
    install_error_handlers(app)

    # the probes first: routes are matched in order, and the API and UI have more than a hundred
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """The database answers and the schema is in place; with a local microVM host
        started by ``serve`` (``app.state.local_host_since``), once it has registered."""
        try:
            async with app.state.db.session() as session:
                await session.execute(text("SELECT 1 FROM procrastinate_jobs LIMIT 1"))
                since = getattr(app.state, "local_host_since", None)
                if since is not None and not await session.scalar(
                        select(func.count()).select_from(Host).where(Host.name == LOCAL_HOST,
                                                                     Host.last_heartbeat_at >= since)):
                    return JSONResponse({"status": "starting", "detail": "waiting for the local microVM host "
                                         "to register"}, status_code=503)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "unavailable", "detail": exc.__class__.__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    app.state.wait_slots = WaitSlots()
    install_metrics(app, settings)
    app.add_middleware(RefuseNul)  # reads text bodies whole: inside the size cap below
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    if settings.dev_mode:
        app.add_middleware(LoopbackHostOnly, networks=settings.dev_allowed_networks)  # outermost: nothing runs for a foreign Host
    install_web(app, settings)
    for router in (*api_routers(), *PAGE_ROUTERS):
        add_routes(app, router)

    async def refresh_counts() -> None:
        """Resources and hosts by status, and what the domains registered, for ``/metrics``."""
        async with app.state.db.session() as session:
            rows = await session.execute(
                select(ComputeResource.status, ComputeResource.provider, func.count()).group_by(
                    ComputeResource.status, ComputeResource.provider
                )
            )
            RESOURCE_STATES.counts = {(s, p): c for s, p, c in rows}
            hosts = await session.execute(select(Host.status, func.count()).group_by(Host.status))
            HOST_STATES.counts = {(s,): c for s, c in hosts}
            await refresh_registered(session, app.state.settings)

    app.state.refresh_counts = refresh_counts

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        """The API's interactive documentation (Swagger UI)."""
        return templates.TemplateResponse(request, "api_docs.html", {"ui": UI, "openapi_url": app.openapi_url})

    return app


def serve_environment(settings: Settings, database_url: str) -> dict[str, str]:
    """The environment that gives each process of ``serve --workers N`` the parent's settings
    (command-line options included) and its prepared database."""
    return {"DATABASE_URL": database_url, "SLICES_BLUEPRINT_HOST": settings.host,
            "SLICES_BLUEPRINT_PORT": str(settings.port), "SLICES_BLUEPRINT_DATA_DIR": str(settings.data_dir),
            "SLICES_BLUEPRINT_RUN_WORKER_IN_SERVE": str(settings.run_worker_in_serve).lower(),
            "SLICES_BLUEPRINT_DEV_MODE": str(settings.dev_mode).lower()}


def app_from_environment() -> FastAPI:
    """The app of one process of ``serve --workers N`` (see :func:`serve_environment`)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    assert settings.database_url, "serve --workers sets DATABASE_URL for its processes"
    return create_app(settings, settings.database_url, tune_gc=True)
