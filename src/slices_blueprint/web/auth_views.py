"""Logging in (SLICES OIDC, or dev mode's local issuer), out, and giving the experiment token."""

from __future__ import annotations

import re
from typing import Annotated

import httpx
import structlog
from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from slices_blueprint.core import dev_issuer
from slices_blueprint.core.deps import SessionDep, SettingsDep
from slices_blueprint.core.errors import Forbidden, Invalid, NotFound, Unauthorized
from slices_blueprint.core.routing import page_router
from slices_blueprint.identity.deps import caller_from_token
from slices_blueprint.web import oidc
from slices_blueprint.web.deps import (
    UI,
    CsrfChecked,
    FormRejected,
    SessionUi,
    UserDep,
    redirect,
    render,
)
from slices_blueprint.web.session import ensure_fits, revoke

log = structlog.get_logger(__name__)
router = page_router(UI)
DEV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEV_FIELDS = ("user", "project", "experiment")


def _next(url: str | None) -> str:
    """Where to go after login: only our own pages."""
    return url if url and url.startswith(f"{UI}/") else f"{UI}/"


def _callback_url(request: Request) -> str:
    return f"{request.app.state.settings.service_url}{UI}/auth/callback"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, settings: SettingsDep, next: str | None = None) -> HTMLResponse:
    """Log in with SLICES, or (dev mode) as a local user of a local project and experiment."""
    return render(request, "login.html", next=_next(next), oidc=oidc.enabled(settings),
                  dev=settings.dev_mode, values={"user": "alice", "project": "demo", "experiment": "exp1"})


@router.post("/login/dev", dependencies=[CsrfChecked])
async def dev_login(
    request: Request, db: SessionDep, settings: SettingsDep, session: SessionUi,
    user: Annotated[str, Form()] = "", project: Annotated[str, Form()] = "",
    experiment: Annotated[str, Form()] = "", ssh_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Mint a dev user id-token and experiment JWT, verify them like any token, keep them."""
    if not settings.dev_mode:
        raise NotFound("dev mode is off")
    values = {"user": user, "project": project, "experiment": experiment}
    errors = {f: "lower-case letters, digits, - and _, starting with a letter" for f in DEV_FIELDS if not DEV_NAME.match(values[f])}
    if errors:
        raise FormRejected(request, "login.html", {"next": _next(next), "oidc": oidc.enabled(settings), "dev": True, "values": values}, errors)
    lifetime = settings.web_session_hours * 3600
    user_token = dev_issuer.mint_dev_token(settings, user=user, project=project, lifetime_s=lifetime, ssh_key=ssh_key.strip() or None)
    exp_token = dev_issuer.mint_dev_token(settings, user=user, project=project, experiment=experiment, lifetime_s=lifetime)
    caller = await caller_from_token(request, db, user_token)
    await caller_from_token(request, db, exp_token)
    session.start(user_token=user_token, experiment_token=exp_token, name=user,
                  experiment_name=f"{project}/{experiment}", admin=caller.is_admin)
    log.info("web.login", method="dev", user=caller.actor)
    return redirect(request, _next(next), f"Logged in as {user} (dev mode), experiment {project}/{experiment}.")


@router.post("/login/oidc", dependencies=[CsrfChecked])
async def oidc_login(request: Request, settings: SettingsDep, session: SessionUi, next: Annotated[str, Form()] = "") -> RedirectResponse:
    """Send the browser to the SLICES provider (authorization code + PKCE)."""
    if not oidc.enabled(settings):
        raise NotFound("login with SLICES is not configured on this site")
    async with httpx.AsyncClient(timeout=10) as http:
        url, pending = await oidc.begin(http, settings, _callback_url(request))
    session["oidc"] = pending | {"next": _next(next)}
    return RedirectResponse(url, status_code=303)


@router.get("/auth/callback")
async def oidc_callback(request: Request, db: SessionDep, settings: SettingsDep, session: SessionUi) -> RedirectResponse:
    """The provider's answer: exchange the code, verify the id-token, start the session."""
    pending = session.pop("oidc")
    if not pending or not oidc.enabled(settings):
        raise Forbidden("no login is under way in this browser; start again")
    async with httpx.AsyncClient(timeout=10) as http:
        tokens = await oidc.finish(http, settings, _callback_url(request), dict(request.query_params), pending)
    caller = await caller_from_token(request, db, tokens.id_token)
    oidc.check_nonce(caller.token.claims, pending)
    if caller.kind != "user":
        raise Forbidden("the identity provider answered an experiment token, not a user id-token")
    name = caller.user.preferred_username if caller.user and caller.user.preferred_username else caller.actor
    session.start(user_token=tokens.id_token, name=name, admin=caller.is_admin)
    if tokens.refresh_token:  # renews the id-token until the session's end (web_session_hours)
        session["refresh_token"] = tokens.refresh_token
    ensure_fits(settings, session)
    log.info("web.login", method="oidc", user=caller.actor)
    return redirect(request, pending["next"], f"Logged in as {session['name']}.")


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request, db: SessionDep, settings: SettingsDep, session: SessionUi) -> RedirectResponse:
    """End the session (server-side too), and have the provider revoke its refresh token."""
    refresh_token = session.get("refresh_token")
    await revoke(db, session)
    if refresh_token and oidc.enabled(settings):
        async with httpx.AsyncClient(timeout=5) as http:
            await oidc.revoke(http, settings, refresh_token)
    return redirect(request, f"{UI}/login", "Logged out.")


@router.post("/experiment-token", dependencies=[CsrfChecked])
async def set_experiment_token(
    request: Request, db: SessionDep, settings: SettingsDep, session: SessionUi, caller: UserDep,
    token: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Keep the experiment JWT the user pasted (from ``slices experiment jwt <exp>``)."""
    try:
        experiment = await caller_from_token(request, db, token.strip()) if token.strip() else None
    except Unauthorized as exc:  # a bad pasted token is a form error, not a logout
        raise Invalid(f"that token was refused: {exc.detail}") from exc
    if experiment is None or experiment.experiment is None:
        raise Invalid("paste an experiment token (slices experiment jwt <exp>), not a user token")
    session["experiment_token"] = token.strip()
    session["experiment_name"] = experiment.experiment.name or experiment.experiment.id
    ensure_fits(settings, session)
    return redirect(request, f"{UI}/", f"Using experiment {session['experiment_name']}.")


@router.post("/experiment-token/forget", dependencies=[CsrfChecked])
async def forget_experiment_token(request: Request, session: SessionUi, caller: UserDep) -> RedirectResponse:
    session.pop("experiment_token")
    session.pop("experiment_name")
    return redirect(request, f"{UI}/", "Experiment token forgotten.")
