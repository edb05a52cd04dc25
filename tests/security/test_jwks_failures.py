"""Low finding: an issuer whose keys cannot be fetched must not be fetched again for every
forged token naming it. The attack: 40 forged tokens, 20 at once, naming a trusted issuer
whose JWKS endpoint fails; the issuer must see one fetch per interval, not 40."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Response
from joserfc import jwt
from joserfc.jwk import ECKey

from slices_blueprint.core.config import TrustedIssuer
from tests.conftest import LiveServer, free_port, make_settings, start_server
from tests.helpers import wait_for


class FailingIssuer:
    """A real HTTP issuer whose discovery works and whose JWKS answers 500, counting calls."""

    def __init__(self) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.jwks_calls = 0
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict:
            return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}

        @app.get("/jwks")
        def jwks() -> Response:
            self.jwks_calls += 1
            return Response("down", status_code=500)

        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
        threading.Thread(target=self.server.run, daemon=True).start()
        wait_for(lambda: self.server.started, 30, "the failing issuer starting", interval=0.05)


@pytest.fixture(scope="module")
def failing() -> Iterator[FailingIssuer]:
    issuer = FailingIssuer()
    yield issuer
    issuer.server.should_exit = True


@pytest.fixture(scope="module")
def site(failing: FailingIssuer, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("jwks"), database_url, free_port(), dev_mode=False,
                             providers=["vm"], trusted_issuers=[TrustedIssuer(issuer=failing.url)])
    server = start_server(settings, database_url, worker=False)
    yield server
    server.stop()


def forged(site: LiveServer, issuer: FailingIssuer, n: int) -> str:
    key = ECKey.generate_key("P-256", parameters={"kid": f"k{n}"}, private=True)
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": site.settings.service_url, "sub": f"user_{n}", "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key, algorithms=["ES256"])


def test_failed_jwks_fetches_are_cached(site: LiveServer, failing: FailingIssuer) -> None:
    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one(n: int) -> int:
                headers = {"Authorization": f"Bearer {forged(site, failing, n)}"}
                return (await client.get(f"{site.bi}/flavors", headers=headers)).status_code
            first = await asyncio.gather(*(one(n) for n in range(20)))  # at once
            rest = [await one(n) for n in range(20, 40)]  # one after another
            return [*first, *rest]

    statuses = asyncio.run(flood())
    assert statuses == [401] * 40
    assert failing.jwks_calls == 1, f"the failing JWKS was fetched {failing.jwks_calls} times"
