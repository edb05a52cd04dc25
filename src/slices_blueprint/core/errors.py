"""Errors as RFC 9457 problem details: ``{type, title, status, detail}``."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


class Invalid(ProblemError):
    status, title = 422, "Invalid input"


class BadGateway(ProblemError):
    status, title = 502, "Provider error"


class ServiceUnavailable(ProblemError):
    status, title = 503, "Service unavailable"


class Problem(BaseModel):
    """An error's body (RFC 9457 problem details); some errors add fields (``errors``)."""

    model_config = ConfigDict(extra="allow")
    type: str = "about:blank"
    title: str
    status: int
    detail: str


ERROR_STATUSES = {
    400: "Malformed request", 401: "Missing, invalid or expired token",
    403: "Not allowed: another experiment, not an admin, or over quota",
    404: "No such thing (or not yours)", 409: "Conflicts with the current state",
    413: "Request body too large", 422: "Invalid input", 429: "Too many requests at once",
    503: "A dependency (database, provider) is unavailable",
}


def documented_errors() -> dict[int | str, dict[str, Any]]:
    """The error answers every operation may give, documented as problem+json (the app's
    ``responses``, so the OpenAPI document matches what clients receive)."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {status: {"model": Problem, "description": text, "content": {PROBLEM_JSON: {"schema": schema}}}
            for status, text in ERROR_STATUSES.items()}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, ours and the framework's, as problem details."""

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return problem(422, "Invalid input", f"{where}: {first['msg']}", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request.failed", method=request.method, path=request.url.path)
        return problem(500, "Internal error", "the service failed unexpectedly; the error is logged with this request's id")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        response = problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
