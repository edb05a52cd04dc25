"""The web session: an encrypted cookie (Fernet, the secret box's keys) and CSRF tokens.

The cookie holds the user's id-token (and the provider's refresh token, if any), the
experiment JWT used for writes, the CSRF token, a session id (revoked server-side at logout,
so a copied cookie dies with the logout) and, during an OIDC login, the
state/nonce/PKCE verifier. It ends ``web_session_hours`` after the login, refreshed or not.
It is HttpOnly, SameSite=Lax, and Secure when the public URL is https. Every POST must
carry the session's CSRF token, as the ``csrf_token`` form field or (htmx) the
``X-CSRF-Token`` header.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any

from fastapi import Request
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.errors import Forbidden, Invalid
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.web.models import RevokedWebSession

COOKIE = "sb_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MAX_COOKIE_BYTES = 4000  # browsers drop cookies above 4096 bytes


class WebSession(dict[str, Any]):
    """The session's values; ``changed`` tells the middleware to write the cookie."""

    changed = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.changed = True
        super().__setitem__(key, value)

    def pop(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.changed = self.changed or key in self
        return super().pop(key, default)

    def clear(self) -> None:
        self.changed = True
        super().clear()

    def start(self, **values: Any) -> None:
        """A new login: forget the previous session's values, get a fresh CSRF token."""
        self.clear()
        for key, value in values.items():
            self[key] = value
        self["csrf"] = secrets.token_urlsafe(32)
        self["sid"] = secrets.token_urlsafe(32)  # revoked server-side at logout

    @property
    def csrf(self) -> str:
        """This session's CSRF token (made on first use)."""
        if "csrf" not in self:
            self["csrf"] = secrets.token_urlsafe(32)
        return self["csrf"]


class WebSessionMiddleware:
    """Loads the session for ``/ui`` requests into ``scope["web_session"]``, saves it if changed."""

    def __init__(self, app: ASGIApp, settings: Settings, prefix: str = "/ui") -> None:
        self.app, self.settings, self.prefix = app, settings, prefix
        self.static = f"{prefix}/static/"
        self.max_age = settings.web_session_hours * 3600
        self.secure = settings.service_url.startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith(self.prefix) or path.startswith(self.static):
            await self.app(scope, receive, send)  # static files need no session (nor its query)
            return
        session = self._load(scope)
        if session.get("sid") and await is_revoked(scope["app"].state.db, session["sid"]):
            session = WebSession()
        scope["web_session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.changed:
                MutableHeaders(scope=message).append("set-cookie", self._cookie(session))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _load(self, scope: Scope) -> WebSession:
        raw = dict(scope["headers"]).get(b"cookie", b"").decode("latin-1")
        morsel = SimpleCookie(raw).get(COOKIE)
        if morsel is None:
            return WebSession()
        try:
            values = json.loads(secret_box(self.settings).decrypt(morsel.value.encode()))
        except ValueError:  # another key, or tampered with
            return WebSession()
        return WebSession(values) if values.get("until", 0) > time.time() else WebSession()

    def _cookie(self, session: WebSession) -> str:
        flags = f"Path={self.prefix}; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")
        if not session:
            return f"{COOKIE}=; {flags}; Max-Age=0"
        until = session.setdefault("until", time.time() + self.max_age)  # enforced here, not only by the browser
        max_age = max(0, int(until - time.time()))  # a cookie rewritten later (a refresh) keeps the login's end
        return f"{COOKIE}={encode(self.settings, session)}; {flags}; Max-Age={max_age}"


def _sid_hash(sid: str) -> bytes:
    return hashlib.sha256(sid.encode()).digest()


async def is_revoked(db: Database, sid: str) -> bool:
    """Whether the session ``sid`` was logged out (on any replica of the service)."""
    async with db.session() as session:
        found = await session.scalar(select(RevokedWebSession.sid_hash).where(RevokedWebSession.sid_hash == _sid_hash(sid)))
    return found is not None


async def revoke(db: AsyncSession, session: WebSession) -> None:
    """End ``session`` for good: its cookie, even if copied, is an empty session from now on.

    Revocations are kept until the session would have ended anyway; older ones are pruned."""
    if session.get("sid"):
        until = dt.datetime.fromtimestamp(session.get("until", time.time()), dt.UTC)
        await db.execute(delete(RevokedWebSession).where(RevokedWebSession.until < utcnow()))
        await db.execute(insert(RevokedWebSession).values(sid_hash=_sid_hash(session["sid"]), until=until)
                         .on_conflict_do_nothing())
    session.clear()


def encode(settings: Settings, session: WebSession) -> str:
    return secret_box(settings).encrypt(json.dumps(dict(session)).encode()).decode()


def ensure_fits(settings: Settings, session: WebSession) -> None:
    """Refuse tokens too large for one cookie (before the browser silently drops it)."""
    if len(encode(settings, session)) > MAX_COOKIE_BYTES:
        raise Invalid("these tokens are too large to keep in a browser session")


def web_session(request: Request) -> WebSession:
    return request.scope["web_session"]


async def check_csrf(request: Request) -> None:
    """Refuse a POST that does not carry this session's CSRF token."""
    session = web_session(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or "csrf" not in session or not hmac.compare_digest(sent, session["csrf"]):
        raise Forbidden("the form is stale or was not sent by this site (CSRF check failed); reload the page")
