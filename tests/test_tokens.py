"""Token verification against a real OIDC issuer served over HTTP on loopback.

Every token below reaches the service over real HTTP; the issuer's discovery document and
JWKS are fetched over real HTTP too. Forged, expired, wrong-issuer, wrong-audience,
alg-confusion, ``none`` and unknown-kid tokens must all be refused with 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from slices_blueprint.core.config import TrustedIssuer
from tests.conftest import LiveServer, free_port, make_settings, start_server
from tests.helpers import wait_for


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Issuer:
    """A real OIDC issuer (discovery + JWKS) whose keys a test can rotate."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec1"}, private=True)
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa1"}, private=True)
        self.published = [self.ec, self.rsa]
        self.jwks_fetches = 0
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            self.jwks_fetches += 1
            return {"keys": [k.as_dict(private=False) for k in self.published]}

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def sign(self, claims: dict[str, Any], key: Any = None, alg: str = "ES256", kid: str | None = None) -> str:
        key = key or self.ec
        header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key, algorithms=[alg])


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    issuer.thread.start()
    wait_for(lambda: issuer.server.started, 30, "the test issuer starting", interval=0.05)
    yield issuer
    issuer.server.should_exit = True


@pytest.fixture(scope="module")
def site(issuer: Issuer, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path_factory.mktemp("tokens"), database_url, free_port(), dev_mode=False,
        providers=["vm"], trusted_issuers=[TrustedIssuer(issuer=issuer.url)],
    )
    server = start_server(settings, database_url, worker=False)
    yield server
    server.stop()


def user_claims(site: LiveServer, issuer: Issuer, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": site.settings.service_url, "sub": "user_account.test_alice",
              "iat": now, "exp": now + 300, "preferred_username": "alice", "email": "alice@example.org"}
    claims.update(over)
    return claims


def status(site: LiveServer, token: str) -> int:
    response = httpx.get(f"{site.bi}/flavors", headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 401:
        assert response.json()["title"] == "Unauthorized"
        assert response.headers["content-type"] == "application/problem+json"
    return response.status_code


def test_valid_user_tokens_es256_and_rs256_are_accepted(site: LiveServer, issuer: Issuer) -> None:
    assert status(site, issuer.sign(user_claims(site, issuer))) == 200
    assert status(site, issuer.sign(user_claims(site, issuer), key=issuer.rsa, alg="RS256")) == 200
    assert status(site, issuer.sign(user_claims(site, issuer), key=issuer.rsa, alg="RS512")) == 200


def test_valid_experiment_token_is_accepted(site: LiveServer, issuer: Issuer) -> None:
    claims = user_claims(site, issuer, sub="exp_expauth.test_01", proj="proj_test_01")
    response = httpx.get(f"{site.bi}/resources", headers={"Authorization": f"Bearer {issuer.sign(claims)}"})
    assert response.status_code == 200, response.text
    assert response.json() == []


def test_forged_signature_is_refused(site: LiveServer, issuer: Issuer) -> None:
    forger = ECKey.generate_key("P-256", parameters={"kid": "ec1"}, private=True)  # same kid, other key
    assert status(site, issuer.sign(user_claims(site, issuer), key=forger)) == 401
    token = issuer.sign(user_claims(site, issuer))
    head, payload, sig = token.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["sub"] = "user_account.test_mallory"
    forged_payload = b64(json.dumps(tampered).encode())
    assert status(site, f"{head}.{forged_payload}.{sig}") == 401


def test_expired_and_not_yet_valid_tokens_are_refused(site: LiveServer, issuer: Issuer) -> None:
    now = int(time.time())
    assert status(site, issuer.sign(user_claims(site, issuer, exp=now - 120))) == 401
    assert status(site, issuer.sign(user_claims(site, issuer, nbf=now + 600))) == 401
    claims = user_claims(site, issuer)
    del claims["exp"]
    assert status(site, issuer.sign(claims)) == 401


def test_wrong_issuer_is_refused(site: LiveServer, issuer: Issuer) -> None:
    assert status(site, issuer.sign(user_claims(site, issuer, iss="https://evil.example"))) == 401


def test_wrong_audience_is_refused(site: LiveServer, issuer: Issuer) -> None:
    assert status(site, issuer.sign(user_claims(site, issuer, aud="https://other-site.example"))) == 401
    claims = user_claims(site, issuer)
    del claims["aud"]
    assert status(site, issuer.sign(claims)) == 401


def test_alg_confusion_and_none_are_refused(site: LiveServer, issuer: Issuer) -> None:
    # the classic attack: HMAC-sign with the issuer's *public* key as the secret
    body = b64(json.dumps(user_claims(site, issuer)).encode())
    header = b64(b'{"alg":"HS256","kid":"rsa1","typ":"JWT"}')
    secret = issuer.rsa.as_pem(private=False)
    signature = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    assert status(site, f"{header}.{body}.{signature}") == 401
    none_header = b64(b'{"alg":"none","typ":"JWT"}')
    assert status(site, f"{none_header}.{body}.") == 401
    assert status(site, "not-a-jwt") == 401


def test_unknown_kid_refetches_once_then_accepts_rotated_key(site: LiveServer, issuer: Issuer) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "ec-unknown"}, private=True)
    assert status(site, issuer.sign(user_claims(site, issuer), key=stranger)) == 401
    # the issuer rotates to a new key: once the refetch window allows, the new kid is accepted
    rotated = ECKey.generate_key("P-256", parameters={"kid": "ec2"}, private=True)
    issuer.published = [issuer.ec, issuer.rsa, rotated]
    from slices_blueprint.core import security

    security.JWKS_REFRESH_MIN_SECONDS = 0  # this process's verifier: allow the refetch now
    try:
        fetches = issuer.jwks_fetches
        assert status(site, issuer.sign(user_claims(site, issuer), key=rotated)) == 200
        assert issuer.jwks_fetches == fetches + 1
        assert status(site, issuer.sign(user_claims(site, issuer), key=rotated)) == 200
        assert issuer.jwks_fetches == fetches + 1  # cached
    finally:
        security.JWKS_REFRESH_MIN_SECONDS = 30


def test_dev_issuer_tokens_are_refused_when_dev_mode_is_off(site: LiveServer) -> None:
    from slices_blueprint.core.dev_issuer import mint_dev_token

    token = mint_dev_token(site.settings, user="alice", project="demo")
    assert status(site, token) == 401
    assert httpx.post(f"{site.url}/dev/tokens", json={}).status_code == 404


def test_an_experiment_stays_in_its_project(site: LiveServer, issuer: Issuer) -> None:
    """A later token naming another project for a known experiment is refused, and the
    experiment keeps its project; renaming it (same project) is recorded."""
    def listed(**extra: str) -> httpx.Response:
        claims = user_claims(site, issuer, sub="exp_expauth.test_03", **extra)
        return httpx.get(f"{site.bi}/resources", headers={"Authorization": f"Bearer {issuer.sign(claims)}"})

    assert listed(proj="proj_test_a").status_code == 200
    moved = listed(proj="proj_test_b")
    assert moved.status_code == 403 and "another project" in moved.json()["detail"]
    assert listed(proj="proj_test_a", experiment_name="renamed").status_code == 200
    with psycopg.connect(site.settings.database_url) as conn:
        row = conn.execute("SELECT project_id, name FROM experiments WHERE id = 'exp_expauth.test_03'").fetchone()
    assert row == ("proj_test_a", "renamed")


def test_experiment_token_without_project_is_refused(site: LiveServer, issuer: Issuer) -> None:
    assert status(site, issuer.sign(user_claims(site, issuer, sub="exp_expauth.test_02"))) == 401


def _remembered(site: LiveServer, token: str) -> bool:
    from slices_blueprint.core.ttl_cache import token_key

    return site.server.config.app.state.verifier._verified.get(token_key(token)) is not None


def test_a_remembered_token_is_refused_once_expired(site: LiveServer, issuer: Issuer) -> None:
    """Verified tokens are remembered, never past their expiry."""
    site.settings.token_leeway_seconds = 0
    try:
        token = issuer.sign(user_claims(site, issuer, exp=int(time.time()) + 2))
        assert status(site, token) == 200
        assert _remembered(site, token)
        wait_for(lambda: time.time() > json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"] + 1.1,
                 5, "the token expiring", interval=0.1)
        assert status(site, token) == 401
        assert not _remembered(site, token)
    finally:
        site.settings.token_leeway_seconds = 30


def test_a_forged_token_is_never_remembered(site: LiveServer, issuer: Issuer) -> None:
    """The claims of a token already verified, signed by another key: refused every time,
    and not remembered (the cache is keyed by the whole token, signature included)."""
    claims = user_claims(site, issuer)
    genuine = issuer.sign(claims)
    assert status(site, genuine) == 200 and _remembered(site, genuine)
    forger = ECKey.generate_key("P-256", parameters={"kid": "ec1"}, private=True)
    forged = issuer.sign(claims, key=forger)
    for _ in range(2):
        assert status(site, forged) == 401
    assert not _remembered(site, forged)
    head, payload, _sig = genuine.split(".")
    assert status(site, f"{head}.{payload}.{forged.split('.')[2]}") == 401
