"""The web UI's routes: ``/`` leads to ``/ui/``, where every page lives."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from slices_blueprint.web import (
    admin_views,
    auth_views,
    live_views,
    qkd_views,
    quota_views,
    reservation_views,
    resource_views,
)
from slices_blueprint.web.deps import UI

router = APIRouter(include_in_schema=False)
for module in (auth_views, resource_views, live_views, admin_views, quota_views, qkd_views, reservation_views):
    router.include_router(module.router)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse(f"{UI}/", status_code=307)


@router.get("/favicon.ico")
async def favicon() -> RedirectResponse:
    """For browsers that ask before reading a page's icon link."""
    return RedirectResponse(f"{UI}/static/favicon.svg", status_code=308)
