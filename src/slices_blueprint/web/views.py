"""The web UI's routes: ``/`` leads to ``/ui/``, where every page lives."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from slices_blueprint.core.routing import page_router
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

router = page_router("")


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse(f"{UI}/", status_code=307)


@router.get("/favicon.ico")
async def favicon() -> RedirectResponse:
    """For browsers that ask before reading a page's icon link."""
    return RedirectResponse(f"{UI}/static/favicon.svg", status_code=308)


PAGE_ROUTERS: tuple[APIRouter, ...] = (
    auth_views.router, resource_views.router, live_views.router, admin_views.router, quota_views.router,
    qkd_views.router, reservation_views.router, router,
)
"""The web UI's routers, in the order their routes are tried (after the API's)."""
