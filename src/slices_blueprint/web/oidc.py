"""Logging in with the SLICES OpenID provider: authorization code flow with PKCE (S256).

httpx talks to the provider; the id-token we get back is verified by the service's own
``TokenVerifier`` (joserfc), as any API token is, so the provider's issuer must be among
``trusted_issuers`` and its id-tokens must name the service URL as audience (register the
client with the service URL as client id, or have the provider add it). State and nonce
are checked here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import ServiceUnavailable, Unauthorized


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


async def begin(http: httpx.AsyncClient, settings: Settings, redirect_uri: str) -> tuple[str, dict[str, str]]:
    """The provider's authorization URL, and what the session must keep until the callback."""
    metadata = await _metadata(http, settings)
    pending = {name: secrets.token_urlsafe(32) for name in ("state", "nonce", "verifier")}
    query = {
        "response_type": "code", "client_id": settings.oidc_client_id, "redirect_uri": redirect_uri,
        "scope": settings.oidc_scopes, "state": pending["state"], "nonce": pending["nonce"],
        "code_challenge": s256(pending["verifier"]), "code_challenge_method": "S256",
    }
    return f"{metadata['authorization_endpoint']}?{urlencode(query)}", pending


async def finish(
    http: httpx.AsyncClient, settings: Settings, redirect_uri: str, params: dict[str, str], pending: dict[str, str]
) -> str:
    """Check the callback's state, exchange its code (with the PKCE verifier) for the id-token."""
    if not hmac.compare_digest(params.get("state", ""), pending["state"]):
        raise Unauthorized("the login answer does not belong to this browser (state mismatch); start again")
    if "error" in params or "code" not in params:
        raise Unauthorized(f"the identity provider refused the login: {params.get('error_description') or params.get('error', 'no code')}")
    metadata = await _metadata(http, settings)
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect_uri,
            "code_verifier": pending["verifier"]}
    try:
        basic = (quote(settings.oidc_client_id or "", safe=""), quote(secret, safe=""))  # RFC 6749, 2.3.1
        response = await http.post(metadata["token_endpoint"], data=form, auth=basic)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(f"the identity provider's token endpoint failed ({exc.__class__.__name__})") from exc
    if response.status_code != 200 or "id_token" not in answer:
        raise Unauthorized(f"the identity provider gave no id-token: {answer.get('error_description') or answer.get('error', response.status_code)}")
    return answer["id_token"]


def check_nonce(claims: dict[str, Any], pending: dict[str, str]) -> None:
    if not hmac.compare_digest(str(claims.get("nonce", "")), pending["nonce"]):
        raise Unauthorized("the id-token does not answer this login (nonce mismatch)")
