"""What every page needs: templates, the session's callers (verified like API tokens, the
user's id-token refreshed with the refresh token when it is about to expire), and errors
rendered as pages (after the request's transaction rolled back)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from slices_blueprint.core.config import Settings
from slices_blueprint.core.deps import SessionDep
from slices_blueprint.core.errors import (
    Forbidden,
    Invalid,
    ProblemError,
    ServiceUnavailable,
    Unauthorized,
)
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.deps import caller_from_token
from slices_blueprint.web import oidc
from slices_blueprint.web.session import (
    WebSession,
    WebSessionMiddleware,
    check_csrf,
    ensure_fits,
    web_session,
)

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent
UI = "/ui"
templates = Jinja2Templates(directory=HERE / "templates")


def countdown(when: dt.datetime | None) -> str:
    """``in 2 d 3 h``, ``in 14 min``, or ``expired``."""
    if when is None:
        return "never"
    seconds = int((when - utcnow()).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = max(1, rest // 60) if not (days or hours) else rest // 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes and not days else ""]
    return "in " + " ".join(p for p in parts if p)


def short_key(key: str) -> str:
    """An SSH public key as ``type …last8 comment``: recognisable, and short enough to wrap."""
    kind, _, rest = key.partition(" ")
    body, _, comment = rest.partition(" ")
    return f"{kind} …{body[-8:]} {comment}".strip()


TONES = {"running": "ok", "succeeded": "ok", "active": "ok", "error": "bad", "failed": "bad",
         "paused": "idle", "stopped": "idle", "deleted": "idle", "cancelled": "idle", "ended": "idle"}
"""How a status badge is coloured (its text always says the status): the rest are under way."""


def tone(status: str, task: bool = False) -> str:
    """``ok``, ``bad``, ``idle`` or ``busy`` (an operation under way; a running task is one)."""
    return "busy" if task and status == "running" else TONES.get(status, "busy")


templates.env.filters.update(
    countdown=countdown, short_key=short_key, tone=tone,
    typeid=lambda row, kind, site: format_id(kind, site, row.id),
    iso=lambda when: when.isoformat(timespec="seconds") if when else "",
)


class FormRejected(ProblemError):
    """A form with field errors, re-rendered (while the database session is still open) with
    each error next to its field; raising it rolls the request's transaction back (422)."""

    status, title = 422, "Invalid input"

    def __init__(self, request: Request, template: str, context: dict[str, Any], errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.response = render(request, template, 422, errors=errors, **context)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or fragment, with the session's user, CSRF token and flash message."""
    session = web_session(request)
    base = {"session": session, "csrf": session.csrf, "flash": session.pop("flash"), "ui": UI}
    return templates.TemplateResponse(request, template, base | context, status_code=status_code)


def redirect(request: Request, url: str, flash: str | None = None) -> RedirectResponse:
    """A 303 to ``url``, with a message for the next page."""
    if flash:
        web_session(request)["flash"] = flash
    return RedirectResponse(url, status_code=303)


async def user_caller(request: Request, db: SessionDep) -> Caller:
    """The logged-in user (their id-token, verified now; refreshed first when it is about to expire)."""
    session = web_session(request)
    token = session.get("user_token")
    if not token:
        raise Unauthorized("please log in")
    claims = oidc.stored_claims(token)
    renewed = await _refresh(request, session, claims) if oidc.refresh_due(claims, time.time()) else None
    caller = await caller_from_token(request, db, renewed.id_token if renewed else token)
    if caller.user is None:
        raise Unauthorized("the session holds no user id-token; log in again")
    if renewed:
        _store_refreshed(request, session, renewed, caller, claims)
    return caller


async def _refresh(request: Request, session: WebSession, claims: dict[str, Any]) -> oidc.Tokens | None:
    """New tokens for the session's id-token, about to expire; None: go on with it while it is valid."""
    settings = request.app.state.settings
    expired = float(claims["exp"]) <= time.time()
    if "refresh_token" not in session or not oidc.enabled(settings):
        if expired:
            raise Unauthorized("your login has expired; please log in again")
        return None
    try:
        return await request.app.state.oidc_refresher.refresh(session["refresh_token"])
    except ServiceUnavailable as exc:
        log.warning("web.session_refresh_unavailable", error=exc.detail, expired=expired)
        if expired:
            raise Unauthorized("your login could not be renewed: the identity provider cannot be reached; "
                               "please log in again later") from exc
        return None
    except Unauthorized as exc:
        log.info("web.session_refresh_refused", error=exc.detail)
        raise Unauthorized(f"your login could not be renewed ({exc.detail}); please log in again") from exc


def _store_refreshed(request: Request, session: WebSession, tokens: oidc.Tokens, caller: Caller, old: dict[str, Any]) -> None:
    """Keep refreshed tokens: the new id-token (verified like at login) must name the same user
    (OpenID Connect Core, section 12.2); a provider that rotates refresh tokens sent a new one."""
    if (caller.token.issuer, caller.token.subject) != (str(old["iss"]).rstrip("/"), str(old["sub"])):
        raise Unauthorized("the refreshed id-token names another user; please log in again")
    session["user_token"] = tokens.id_token
    if tokens.refresh_token:
        session["refresh_token"] = tokens.refresh_token
    try:
        ensure_fits(request.app.state.settings, session)
    except Invalid as exc:
        raise Unauthorized(f"your login could not be renewed ({exc.detail}); please log in again") from exc
    log.info("web.session_refreshed", user=caller.actor)


async def experiment_caller(request: Request, db: SessionDep) -> Caller:
    """The experiment whose JWT the user gave for writes."""
    token = web_session(request).get("experiment_token")
    if not token:
        raise Forbidden("this needs your experiment token: paste it on the dashboard (slices experiment jwt <exp>)")
    return await caller_from_token(request, db, token)


UserDep = Annotated[Caller, Depends(user_caller)]
ExperimentDep = Annotated[Caller, Depends(experiment_caller)]
SessionUi = Annotated[WebSession, Depends(web_session)]
CsrfChecked = Depends(check_csrf)


async def _problem_page(request: Request, exc: ProblemError) -> Response:
    htmx = request.headers.get("HX-Request") == "true"
    if isinstance(exc, Unauthorized):
        session = web_session(request)
        for key in ("user_token", "refresh_token", "experiment_token"):
            session.pop(key)
        session["flash"] = exc.detail  # shown on the login page (never taken from the URL)
        back = urlsplit(request.headers.get("HX-Current-URL", "")).path if htmx else ""  # the page, not its fragment
        target = f"{UI}/login?next={quote(back or request.url.path)}"
        return Response(headers={"HX-Redirect": target}) if htmx else RedirectResponse(target, status_code=303)
    if isinstance(exc, FormRejected):
        return exc.response
    if htmx:  # htmx swaps only 2xx answers: show the error in the page's message area
        headers = {"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"}
        response = render(request, "fragments/error.html", problem=exc)
        response.headers.update(headers)
        return response
    return render(request, "error.html", exc.status, problem=exc)


def install_web(app: FastAPI, settings: Settings) -> None:
    """The UI's session middleware, token refresher, static files, and HTML error pages for ``/ui`` paths."""
    app.add_middleware(WebSessionMiddleware, settings=settings, prefix=UI)
    app.state.oidc_refresher = oidc.Refresher(settings)
    app.mount(f"{UI}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    api_handler = app.exception_handlers[ProblemError]

    async def handler(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(UI) and isinstance(exc, ProblemError):
            return await _problem_page(request, exc)
        return await api_handler(request, exc)

    app.add_exception_handler(ProblemError, handler)
