"""Errors as RFC 9457 problem details: ``{type, title, status, detail}``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import procrastinate.exceptions
import psycopg
import psycopg_pool
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


class ProblemError(Exception):
    """An error the API answers with a problem-details body."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(ProblemError):
    status, title = 401, "Unauthorized"


class Forbidden(ProblemError):
    status, title = 403, "Forbidden"


class NotFound(ProblemError):
    status, title = 404, "Not found"


class RequestTimeout(ProblemError):
    status, title = 408, "Request timeout"


class Conflict(ProblemError):
    status, title = 409, "Conflict"


class BodyTooLarge(StarletteHTTPException):
    """A request body over the site's cap, raised while it streams in (an ``HTTPException``,
    so the framework answers it as it is instead of as a body parsing error)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit} bytes this site allows")
        self.limit = limit


def too_large(exc: BodyTooLarge) -> JSONResponse:
    """The 413 problem for ``exc`` (logged: an oversized body may be an attack)."""
    log.info("request.body_too_large", limit=exc.limit)
    return problem(413, "Payload too large", str(exc.detail), limit=exc.limit)


class Invalid(ProblemError):
    status, title = 422, "Invalid input"


class TooManyRequests(ProblemError):
    status, title = 429, "Too many requests"


class BadGateway(ProblemError):
    status, title = 502, "Provider error"


class ServiceUnavailable(ProblemError):
    status, title = 503, "Service unavailable"


RETRY_AFTER_DATABASE_SECONDS = 2
"""What a client is told to wait when the database cannot be reached (restarting, failing
over): a restart takes seconds."""

UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40P01", "40001"})
"""Server states that end or refuse connections: admin or crash shutdown, starting up, too
many connections (with class ``08``, connection exceptions); and the transactions the server
aborted for another's sake (deadlock, serialization failure), which succeed when retried."""

DATABASE_ERRORS = (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, psycopg.Error,
                   psycopg_pool.PoolTimeout, procrastinate.exceptions.ConnectorException)
"""What the database layers raise: SQLAlchemy, psycopg and its pool, the queue's connector."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: its cause or context, and a SQLAlchemy error's driver error."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot serve this now (restarted, connection lost,
    starting up, no pooled connection in time, the transaction aborted by a deadlock): a
    state to wait out and retry, not a bug."""
    for error in _causes(exc):
        if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, (sqlalchemy.exc.TimeoutError, psycopg_pool.PoolTimeout)):
            return True
        if isinstance(error, psycopg.OperationalError) and (
                error.sqlstate is None or error.sqlstate.startswith("08") or error.sqlstate in UNAVAILABLE_SQLSTATES):
            return True
    return False


def database_problem(exc: BaseException) -> JSONResponse | None:
    """The 503 answer, with ``Retry-After``, for a database that cannot be reached now."""
    if not database_unavailable(exc):
        return None
    log.warning("request.database_unavailable", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    response = problem(503, "Service unavailable", "the database cannot serve this request right now; retry after "
                       f"{RETRY_AFTER_DATABASE_SECONDS} s", retry_after=RETRY_AFTER_DATABASE_SECONDS)
    response.headers["Retry-After"] = str(RETRY_AFTER_DATABASE_SECONDS)
    return response


class Problem(BaseModel):
    """An RFC 9457 problem-details body (some problems add fields: ``errors``, ``quota``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str


PROBLEM_SCHEMA = Problem.model_json_schema()
PROBLEM_DESCRIPTIONS = {
    400: "the body could not be read (not UTF-8 JSON)",
    401: "no valid token (the bearer token, or one sent in the body)",
    403: "not allowed: another experiment's write, not an admin, or over the project's quota "
         "(the problem names used, requested, allowed)",
    404: "no such entry, or not one the caller may see",
    409: "conflicts with the current state (e.g. an action on a resource being deleted)",
    413: "the request body is larger than the site allows",
    422: "invalid input (the problem names the field and the limit)",
    429: "too many concurrent requests; retry after Retry-After seconds",
    503: "a dependency (the database, a provider) is unavailable; retry after Retry-After seconds",
}


BODY_PROBLEMS = (400, 413, 422)  # what a route with a JSON body may answer besides its own


def problem_responses(*statuses: int, described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem-details statuses a route may answer (declaring
    422 here replaces the framework's plain-JSON validation error schema); ``described``:
    statuses with the route's own description."""
    descriptions = {**{status: PROBLEM_DESCRIPTIONS[status] for status in statuses}, **(described or {})}
    responses: dict[int | str, dict[str, Any]] = {}
    for status, description in descriptions.items():
        response = {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                                   "schema": {"type": "integer"}}}
        responses[status] = response
    return responses


def documented_errors() -> dict[int | str, dict[str, Any]]:
    """The error answers any operation may give (the app's ``responses``), so the OpenAPI
    document matches what clients receive; routes add or refine theirs."""
    return problem_responses(*PROBLEM_DESCRIPTIONS)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_with_headers(exc: ProblemError) -> JSONResponse:
    """The problem-details response of ``exc``, with its ``headers`` extra as HTTP headers."""
    extra = dict(exc.extra)
    headers = extra.pop("headers", None)
    response = problem(exc.status, exc.title, exc.detail, **extra)
    response.headers.update(headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, ours and the framework's, as problem details."""

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_with_headers(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return problem(422, "Invalid input", f"{where}: {first['msg']}", errors=errors)

    async def _database_or_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return database_problem(exc) or unexpected(request, exc)

    # the database's errors are answered inside the middleware (request id, security headers);
    # anything else, or raised outside a route, by the outermost handler
    for error_class in (*DATABASE_ERRORS, Exception):
        app.add_exception_handler(error_class, _database_or_unexpected)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        response = problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The 500 answer for a failure nothing else explains (logged with its traceback)."""
    log.exception("request.failed", method=request.method, path=request.url.path, exc_info=exc)
    return problem(500, "Internal error", "the service failed unexpectedly; the error is logged with this request's id")


def allowed_methods(request: Request) -> list[str]:
    """The methods answered at this path: those of the routes matching it with the most
    concrete path template, where a literal segment comes before a parameter, as OpenAPI
    matches paths (``/hosts/enrolments`` is not ``/hosts/{host_id}``). Starlette's 405 names
    only the first route's."""
    matching = [route for route in request.app.routes
                if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE]
    if not matching:
        return []
    template = min((route.path_format for route in matching), key=_parameter_segments)
    return sorted({method for route in matching if route.path_format == template for method in route.methods})


def _parameter_segments(template: str) -> tuple[bool, ...]:
    """Which segments of a path template are parameters (the fewer and later, the more concrete)."""
    return tuple(segment.startswith("{") for segment in template.split("/"))
