"""Logging in with the SLICES OpenID provider: authorization code flow with PKCE (S256), and
keeping that login alive with the provider's refresh token.

httpx talks to the provider; the id-token we get back is verified by the service's own
``TokenVerifier`` (joserfc), as any API token is, so the provider's issuer must be among
``trusted_issuers`` and its id-tokens must name the service URL as audience (register the
client with the service URL as client id, or have the provider add it). State and nonce
are checked here.

Refresh: when the provider lists ``offline_access`` in ``scopes_supported`` the login asks for
it, with ``prompt=consent`` as OpenID Connect Core section 11 requires; any refresh token the
provider answers is kept in the session and exchanged for a new id-token shortly before the
current one expires. Logging out revokes it (RFC 7009) where the provider has a revocation
endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import structlog
from joserfc import jws

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import ServiceUnavailable, Unauthorized

log = structlog.get_logger(__name__)

OFFLINE_ACCESS = "offline_access"
REFRESH_MARGIN_SECONDS = 60  # refresh an id-token this long before it expires (or at 3/4 of a shorter life)
REUSE_SECONDS = 60  # how long a finished refresh answers requests still sending the refresh token it used


@dataclass(frozen=True)
class Tokens:
    """What the token endpoint answered: the id-token and, if the provider gave one, a refresh token."""

    id_token: str
    refresh_token: str | None = None


def enabled(settings: Settings) -> bool:
    return bool(settings.oidc_discovery_url and settings.oidc_client_id)


def s256(verifier: str) -> str:
    """The PKCE code challenge of a verifier (RFC 7636, section 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def _metadata(http: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    assert settings.oidc_discovery_url
    try:
        response = await http.get(settings.oidc_discovery_url)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(f"the identity provider cannot be reached ({exc.__class__.__name__})") from exc


def _client_auth(settings: Settings) -> tuple[str, str]:
    """HTTP Basic credentials of this client, form-encoded first (RFC 6749, section 2.3.1)."""
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
    return quote(settings.oidc_client_id or "", safe=""), quote(secret, safe="")


async def begin(http: httpx.AsyncClient, settings: Settings, redirect_uri: str) -> tuple[str, dict[str, str]]:
    """The provider's authorization URL, and what the session must keep until the callback."""
    metadata = await _metadata(http, settings)
    pending = {name: secrets.token_urlsafe(32) for name in ("state", "nonce", "verifier")}
    scopes = settings.oidc_scopes.split()
    if OFFLINE_ACCESS in metadata.get("scopes_supported", []) and OFFLINE_ACCESS not in scopes:
        scopes.append(OFFLINE_ACCESS)
    query = {
        "response_type": "code", "client_id": settings.oidc_client_id, "redirect_uri": redirect_uri,
        "scope": " ".join(scopes), "state": pending["state"], "nonce": pending["nonce"],
        "code_challenge": s256(pending["verifier"]), "code_challenge_method": "S256",
    }
    if OFFLINE_ACCESS in scopes:
        query["prompt"] = "consent"  # OpenID Connect Core, section 11: offline access needs consent
    return f"{metadata['authorization_endpoint']}?{urlencode(query)}", pending


async def _token_request(http: httpx.AsyncClient, settings: Settings, form: dict[str, str]) -> Tokens:
    """POST ``form`` to the token endpoint as this client: ServiceUnavailable when the provider
    cannot answer, Unauthorized when it refuses."""
    metadata = await _metadata(http, settings)
    try:
        response = await http.post(metadata["token_endpoint"], data=form, auth=_client_auth(settings))
        if response.is_server_error:
            response.raise_for_status()
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(f"the identity provider's token endpoint failed ({exc.__class__.__name__})") from exc
    if response.status_code != 200 or "id_token" not in answer:
        reason = answer.get("error_description") or answer.get("error", response.status_code)
        raise Unauthorized(f"the identity provider gave no id-token: {reason}")
    return Tokens(answer["id_token"], answer.get("refresh_token"))


async def finish(
    http: httpx.AsyncClient, settings: Settings, redirect_uri: str, params: dict[str, str], pending: dict[str, str]
) -> Tokens:
    """Check the callback's state, exchange its code (with the PKCE verifier) for the tokens."""
    if not hmac.compare_digest(params.get("state", ""), pending["state"]):
        raise Unauthorized("the login answer does not belong to this browser (state mismatch); start again")
    if "error" in params or "code" not in params:
        raise Unauthorized(f"the identity provider refused the login: {params.get('error_description') or params.get('error', 'no code')}")
    return await _token_request(http, settings, {
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect_uri,
        "code_verifier": pending["verifier"]})


async def refresh(http: httpx.AsyncClient, settings: Settings, refresh_token: str) -> Tokens:
    """New tokens for a refresh token (RFC 6749, section 6)."""
    return await _token_request(http, settings, {"grant_type": "refresh_token", "refresh_token": refresh_token})


async def revoke(http: httpx.AsyncClient, settings: Settings, refresh_token: str) -> None:
    """Have the provider revoke a refresh token (RFC 7009) if it has a revocation endpoint; best effort."""
    try:
        endpoint = (await _metadata(http, settings)).get("revocation_endpoint")
        if endpoint:
            response = await http.post(endpoint, data={"token": refresh_token, "token_type_hint": "refresh_token"},
                                       auth=_client_auth(settings))
            response.raise_for_status()
    except (ServiceUnavailable, httpx.HTTPError) as exc:
        log.warning("web.oidc_revoke_failed", error=str(exc) or exc.__class__.__name__)


class Refresher:
    """Refreshes tokens one exchange per refresh token at a time. Requests from one browser that
    race to refresh its session all send the same refresh token: they share one answer instead of
    replaying a token the provider has just rotated (which it refuses, and may take for theft)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._exchanges: dict[str, tuple[float, asyncio.Task[Tokens]]] = {}

    async def refresh(self, refresh_token: str) -> Tokens:
        now = time.monotonic()
        for key, (started, task) in list(self._exchanges.items()):
            if task.done() and now - started > REUSE_SECONDS:
                del self._exchanges[key]
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        if key not in self._exchanges:
            task = asyncio.create_task(self._exchange(refresh_token))
            task.add_done_callback(partial(self._forget_failure, key))
            self._exchanges[key] = (now, task)
        return await asyncio.shield(self._exchanges[key][1])  # a request that gives up leaves the answer to others

    async def _exchange(self, refresh_token: str) -> Tokens:
        async with httpx.AsyncClient(timeout=10) as http:
            return await refresh(http, self.settings, refresh_token)

    def _forget_failure(self, key: str, task: asyncio.Task[Tokens]) -> None:
        """A failed exchange is not reused: the next request tries again."""
        if task.cancelled() or task.exception():
            self._exchanges.pop(key, None)


def stored_claims(token: str) -> dict[str, Any]:
    """The claims of a token this site stored itself (the session cookie is encrypted and
    authenticated; the token was verified before it was stored), read without verifying again."""
    return json.loads(jws.extract_compact(token.encode()).payload)


def refresh_due(claims: dict[str, Any], now: float) -> bool:
    """Whether an id-token is within the margin before its expiry: 60 s, or a quarter of its
    lifetime if that is shorter."""
    expires = float(claims["exp"])
    margin = min(REFRESH_MARGIN_SECONDS, (expires - float(claims.get("iat", 0))) / 4)
    return now >= expires - margin


def check_nonce(claims: dict[str, Any], pending: dict[str, str]) -> None:
    if not hmac.compare_digest(str(claims.get("nonce", "")), pending["nonce"]):
        raise Unauthorized("the id-token does not answer this login (nonce mismatch)")
