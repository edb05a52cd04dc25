"""The agent's own FastAPI app (``/v1/...``, its OpenAPI at ``/openapi.json``), served over
HTTPS with the agent's own certificate (``tls.py``).

Every route but ``/healthz`` needs the host's bearer token (see ``auth.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal
from urllib.parse import urlparse

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from slices_blueprint.agent.auth import TokenKeeper, require_token
from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.diskspace import DataDirFull
from slices_blueprint.agent.images import ImageRefused
from slices_blueprint.agent.manager import GuestServiceRefused, VMConflict, VMManager, VMNotFound
from slices_blueprint.agent.metrics import host_capacity, prometheus_text, snapshot
from slices_blueprint.agent.protocol import HostView, VMSpec, VMView
from slices_blueprint.agent.registration import Registrar
from slices_blueprint.agent.tls import ensure_certificate
from slices_blueprint.agent.vmm.base import VMM, VMMError
from slices_blueprint.agent.vmm.firecracker import FirecrackerVMM
from slices_blueprint.agent.vmm.jailer import Jailer
from slices_blueprint.agent.vmm.qemu import QemuMicroVM

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])
WaitReady = Annotated[float, Query(ge=0, le=600, description="seconds to wait for the guest")]


def build_vmm(settings: AgentSettings) -> VMM:
    if settings.vmm == "firecracker":
        jailer = None
        if settings.jailer_binary:
            assert settings.jailer_uid is not None and settings.jailer_gid is not None
            jailer = Jailer(settings.jailer_binary, settings.jailer_uid, settings.jailer_gid,
                            settings.jailer_cgroup_version, settings.jailer_netns)
        return FirecrackerVMM(settings.firecracker_binary, jailer)
    return QemuMicroVM(settings.qemu_binary, settings.qemu_accel, settings.tsc_khz,
                       run_as=settings.vm_user)


def _manager(request: Request) -> VMManager:
    return request.app.state.manager


def _view(request: Request, vm_id: str) -> VMView:
    manager = _manager(request)
    record = manager.get(vm_id)
    return record.view(manager.guest_ready(record), request.app.state.public_host)


@router.get("/host", response_model=HostView)
async def host(request: Request) -> HostView:
    manager = _manager(request)
    return HostView(name=manager.settings.name, vmm=manager.vmm.name, network_mode=manager.mode,
                    images=manager.images.names(), **host_capacity(manager))


@router.get("/vms", response_model=list[VMView])
async def list_vms(request: Request) -> list[VMView]:
    return [_view(request, r.id) for r in _manager(request).list()]


@router.post("/vms", response_model=VMView, status_code=status.HTTP_201_CREATED)
async def create_vm(spec: VMSpec, request: Request, response: Response,
                    wait_ready: WaitReady = 0) -> VMView:
    """Create and boot a VM; the same id again answers the existing VM (200). Image URLs
    must be http(s), or file: URLs inside the agent's image directory (else 422)."""
    manager = _manager(request)
    manager.images.check(spec.image)
    record, created = await manager.create(spec)
    if not created:
        response.status_code = status.HTTP_200_OK
    if wait_ready and record.state == "running":
        await manager.wait_ready(spec.id, wait_ready)
    return _view(request, spec.id)


@router.get("/vms/{vm_id}", response_model=VMView)
async def get_vm(vm_id: str, request: Request, wait_ready: WaitReady = 0) -> VMView:
    if wait_ready:
        await _manager(request).wait_ready(vm_id, wait_ready)
    return _view(request, vm_id)


@router.delete("/vms/{vm_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_vm(vm_id: str, request: Request) -> Response:
    if not await _manager(request).delete(vm_id):
        raise VMNotFound(vm_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/vms/{vm_id}/{action}", response_model=VMView)
async def act(vm_id: str, action: Literal["start", "stop", "pause", "resume"],
              request: Request) -> VMView:
    await getattr(_manager(request), action)(vm_id)
    return _view(request, vm_id)


@router.get("/vms/{vm_id}/console", response_class=PlainTextResponse)
async def console(vm_id: str, request: Request, tail: int = Query(200, ge=1, le=10000)) -> str:
    return _manager(request).console_tail(vm_id, tail)


metrics_router = APIRouter(dependencies=[Depends(require_token)])


@metrics_router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    body = prometheus_text(await snapshot(_manager(request)))
    return Response(body, media_type="text/plain; version=0.0.4")


def _problem(status_code: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status_code,
                         "detail": detail}, status_code=status_code,
                        media_type="application/problem+json")


def create_agent_app(settings: AgentSettings | None = None) -> FastAPI:
    settings = settings or AgentSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = VMManager(settings, build_vmm(settings))
        app.state.startup_report = await manager.startup()
        app.state.manager = manager
        registrar = Registrar(settings, app.state.tokens, manager, app.state.certificate)
        task = asyncio.create_task(registrar.run()) if settings.service_url else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await registrar.close()

    app = FastAPI(title="slices-blueprint host agent", version="1", lifespan=lifespan)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.state.settings = settings
    app.state.tokens = TokenKeeper(settings)
    app.state.certificate = ensure_certificate(settings)
    app.state.public_host = settings.public_host or urlparse(settings.url).hostname or "127.0.0.1"

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.exception_handler(VMNotFound)
    async def _not_found(_: Request, exc: VMNotFound) -> JSONResponse:
        return _problem(404, "Not found", f"no VM {exc}")

    @app.exception_handler(VMConflict)
    async def _conflict(_: Request, exc: VMConflict) -> JSONResponse:
        return _problem(409, "Conflict", str(exc))

    @app.exception_handler(ImageRefused)
    async def _refused(_: Request, exc: ImageRefused) -> JSONResponse:
        return _problem(422, "Image refused", str(exc))

    @app.exception_handler(GuestServiceRefused)
    async def _service_refused(_: Request, exc: GuestServiceRefused) -> JSONResponse:
        return _problem(422, "Guest service refused", str(exc))

    @app.exception_handler(DataDirFull)
    async def _full(_: Request, exc: DataDirFull) -> JSONResponse:
        return _problem(507, "Insufficient storage", str(exc))

    @app.exception_handler(VMMError)
    async def _vmm(_: Request, exc: VMMError) -> JSONResponse:
        return _problem(502, "VMM error", str(exc))

    @app.exception_handler(TimeoutError)
    async def _timeout(_: Request, exc: TimeoutError) -> JSONResponse:
        return _problem(504, "Timeout", str(exc))

    app.include_router(router)
    app.include_router(metrics_router)
    return app
