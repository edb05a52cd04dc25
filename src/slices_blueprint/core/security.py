"""Verifying SLICES tokens: signature against the issuer's JWKS, issuer allow-list,
algorithm allow-list, audience, expiry.

Two kinds of token reach us:
- user id-tokens (``aud`` = this service's URL; ``sub`` is the SLICES user id),
- experiment JWTs (``sub`` starts with ``exp_``; ``proj`` names the project).
Only asymmetric algorithms are accepted (ES256, RS256, RS512): never ``none``, never HMAC,
so a public key can never be used as an HMAC secret.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import structlog
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from slices_blueprint.core.config import Settings, TrustedIssuer
from slices_blueprint.core.errors import Unauthorized
from slices_blueprint.core.ttl_cache import TtlCache, token_key

log = structlog.get_logger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256", "RS512"})
JWKS_REFRESH_MIN_SECONDS = 30  # an issuer's JWKS is fetched at most this often, failures too
VERIFIED_SECONDS = 60  # a verified token is trusted again without checking for this long at most
VERIFIED_MAX = 10_000  # verified tokens remembered

TokenKind = Literal["user", "experiment"]


@dataclass(frozen=True)
class VerifiedToken:
    kind: TokenKind
    issuer: str
    subject: str
    claims: dict[str, Any]


@dataclass
class _CachedKeys:
    keys: KeySet
    fetched_at: float


@dataclass
class TokenVerifier:
    """Checks tokens; keeps each issuer's JWKS cached and refetches it on an unknown kid."""

    settings: Settings
    http: httpx.AsyncClient
    static_issuers: dict[str, KeySet] = field(default_factory=dict)  # the dev issuer
    _cache: dict[str, _CachedKeys] = field(default_factory=dict)
    _failed_at: dict[str, float] = field(default_factory=dict)  # last failed fetch per issuer
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)  # one fetch at a time per issuer
    _verified: TtlCache[bytes, VerifiedToken] = field(default_factory=lambda: TtlCache(VERIFIED_MAX))

    def _issuers(self) -> dict[str, TrustedIssuer]:
        trusted = {i.issuer.rstrip("/"): i for i in self.settings.trusted_issuers}
        for issuer in self.static_issuers:
            trusted[issuer] = TrustedIssuer(issuer=issuer, algorithms=["ES256"])
        return trusted

    async def verify(self, token: str, expect: TokenKind | None = None) -> VerifiedToken:
        """Verify ``token`` completely or raise :class:`Unauthorized` saying why.

        A token that passed is remembered (by its hash) until its ``exp``, but for
        :data:`VERIFIED_SECONDS` at most (then it is verified again, leeway included): a signing key the issuer withdrew, or an issuer no
        longer trusted, stops being honoured within that time."""
        key = token_key(token)
        verified = self._verified.get(key)
        if verified is None:
            verified = await self._verify(token)
            self._verified.put(key, verified, min(float(verified.claims["exp"]), time.time() + VERIFIED_SECONDS))
        if expect and verified.kind != expect:
            raise Unauthorized(f"a {expect} token is needed here, this is a {verified.kind} token")
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        header, unverified = _peek(token)
        issuer = str(unverified.get("iss", "")).rstrip("/")
        trusted = self._issuers().get(issuer)
        if trusted is None:
            raise Unauthorized(f"token issuer {issuer!r} is not trusted by this site")
        alg = header.get("alg")
        allowed = ASYMMETRIC_ALGORITHMS & set(trusted.algorithms)
        if alg not in allowed:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted (allowed: {sorted(allowed)})")
        keys = await self._keys_for(trusted, header.get("kid"))
        try:
            decoded = jwt.decode(token, keys, algorithms=sorted(allowed))
        except JoseError as exc:
            raise Unauthorized(f"token signature is invalid ({exc.error})") from exc
        claims = dict(decoded.claims)
        kind: TokenKind = "experiment" if str(claims.get("sub", "")).startswith("exp_") else "user"
        if trusted.kind not in ("both", kind):
            raise Unauthorized(f"issuer {issuer!r} may not sign {kind} tokens")
        self._check_claims(claims, issuer, kind)
        return VerifiedToken(kind=kind, issuer=issuer, subject=str(claims["sub"]), claims=claims)

    def _check_claims(self, claims: dict[str, Any], issuer: str, kind: TokenKind) -> None:
        audiences = [self.settings.service_url]
        if kind == "experiment":
            audiences += self.settings.experiment_audiences
        elif self.settings.oidc_client_id:  # id-tokens from the web login name our client id
            audiences.append(self.settings.oidc_client_id)
        registry = jwt.JWTClaimsRegistry(
            leeway=self.settings.token_leeway_seconds,
            iss={"essential": True, "value": claims.get("iss")},
            sub={"essential": True},
            exp={"essential": True},
            aud={"essential": True, "values": audiences},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise Unauthorized(f"token rejected: {exc.description or exc.error}") from exc
        if kind == "experiment" and not claims.get("proj"):
            raise Unauthorized("experiment token has no 'proj' claim")

    async def _keys_for(self, issuer: TrustedIssuer, kid: str | None) -> KeySet:
        name = issuer.issuer.rstrip("/")
        if name in self.static_issuers:
            keys = self.static_issuers[name]
            if kid is None or _has_kid(keys, kid):
                return keys
            raise Unauthorized(f"token key id {kid!r} is unknown to issuer {name!r}")
        async with self._locks.setdefault(name, asyncio.Lock()):  # concurrent tokens share a fetch
            return await self._cached_or_fetched(issuer, name, kid)

    async def _cached_or_fetched(self, issuer: TrustedIssuer, name: str, kid: str | None) -> KeySet:
        """The issuer's keys from the cache, or fetched when stale or missing ``kid``, but never
        more than once per :data:`JWKS_REFRESH_MIN_SECONDS`, whether the last fetch worked or
        failed (forged tokens naming an issuer must not make us hammer its JWKS endpoint)."""
        cached = self._cache.get(name)
        now = time.monotonic()
        fresh_enough = cached and now - cached.fetched_at < self.settings.jwks_cache_seconds
        if cached and fresh_enough and (kid is None or _has_kid(cached.keys, kid)):
            return cached.keys
        if cached and now - cached.fetched_at < JWKS_REFRESH_MIN_SECONDS:
            raise Unauthorized(f"token key id {kid!r} is unknown to issuer {name!r}")
        failed_at = self._failed_at.get(name)
        if failed_at is not None and now - failed_at < JWKS_REFRESH_MIN_SECONDS:
            raise Unauthorized(f"cannot read the signing keys of issuer {name!r} (retried at most "
                               f"every {JWKS_REFRESH_MIN_SECONDS} s)")
        try:
            keys = await self._fetch_jwks(issuer)
        except Unauthorized:
            self._failed_at[name] = now
            raise
        self._failed_at.pop(name, None)
        self._cache[name] = _CachedKeys(keys, now)
        if kid is not None and not _has_kid(keys, kid):
            raise Unauthorized(f"token key id {kid!r} is unknown to issuer {name!r}")
        return keys

    async def _fetch_jwks(self, issuer: TrustedIssuer) -> KeySet:
        try:
            jwks_uri = issuer.jwks_uri
            if not jwks_uri:
                discovery = await self.http.get(
                    f"{issuer.issuer.rstrip('/')}/.well-known/openid-configuration"
                )
                discovery.raise_for_status()
                jwks_uri = discovery.json()["jwks_uri"]
            response = await self.http.get(jwks_uri)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, KeyError, ValueError, JoseError) as exc:
            log.warning("security.jwks_unavailable", issuer=issuer.issuer, error=str(exc))
            raise Unauthorized(f"cannot read the signing keys of issuer {issuer.issuer!r}") from exc
        log.info("security.jwks_fetched", issuer=issuer.issuer, keys=len(keys.keys))
        return keys


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, before verification (to pick issuer and key)."""
    try:
        compact = jws.extract_compact(token.encode())
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise Unauthorized("bearer token is not a well-formed JWT") from exc
    if not isinstance(claims, dict):
        raise Unauthorized("bearer token payload is not a JSON object")
    return dict(compact.headers()), claims
