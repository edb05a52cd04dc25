"""Logging in to the UI against a real OpenID provider (npm ``oidc-provider``) on loopback,
with dev mode off: authorization code + PKCE, id-token verified like any API token, renewed
with the (rotated) refresh token when it expires, which logging out revokes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from slices_blueprint.core.errors import ServiceUnavailable, Unauthorized
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.web import oidc
from slices_blueprint.web.session import COOKIE, MAX_COOKIE_BYTES
from tests.browser.conftest import NODE_MODULES, shot
from tests.conftest import (
    LiveServer,
    free_port,
    integration_unavailable,
    make_settings,
    start_server,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.browser
PROVIDER_SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
TOKEN_TTL = 6  # seconds the provider's id-tokens live: the tests wait for them to expire


@dataclass
class OidcSite:
    """The service (dev mode off) and the provider it logs in with."""

    server: LiveServer
    issuer: str
    log: Path  # the provider's output: "grant <grant_type>" for each token it issued
    outage: Path  # while this file exists the provider's token endpoint answers 503

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def client(self) -> tuple[str, str]:
        """The service's client credentials for HTTP Basic (form-encoded: the id is a URL)."""
        settings = self.server.settings
        assert settings.oidc_client_id and settings.oidc_client_secret
        return quote(settings.oidc_client_id, safe=""), quote(settings.oidc_client_secret.get_secret_value(), safe="")

    def grants(self, grant_type: str) -> int:
        return self.log.read_text().splitlines().count(f"grant {grant_type}")


@pytest.fixture(scope="module")
def oidc_site(database_url: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcSite]:
    """The oidc-provider on one loopback port, the service (dev mode off) on another."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "oidc-provider").is_dir():
        integration_unavailable(f"node or the npm package oidc-provider is missing (npm install --prefix {NODE_MODULES.parent} $(cat .ci/npm-browser.txt))")
    provider_port, service_port = free_port(), free_port()
    issuer, service_url, secret = f"http://127.0.0.1:{provider_port}", f"http://127.0.0.1:{service_port}", secrets.token_urlsafe(24)
    workdir = tmp_path_factory.mktemp("oidc-provider")
    log, outage = workdir / "provider.log", workdir / "outage"
    env = os.environ | {"PORT": str(provider_port), "CLIENT_ID": service_url, "CLIENT_SECRET": secret,
                        "REDIRECT_URI": f"{service_url}/ui/auth/callback", "NODE_MODULES": str(NODE_MODULES),
                        "TOKEN_TTL": str(TOKEN_TTL), "OUTAGE_FILE": str(outage)}
    with log.open("wb") as output:
        process = subprocess.Popen([node, str(PROVIDER_SCRIPT)], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"{issuer}/.well-known/openid-configuration", process, log)
        settings = make_settings(
            data_dir, database_url, service_port, dev_mode=False, providers=["vm", "k8s", "microvm"],
            trusted_issuers=[{"issuer": issuer, "kind": "user"}], oidc_client_id=service_url,
            oidc_client_secret=secret, oidc_discovery_url=f"{issuer}/.well-known/openid-configuration",
        )
        server = start_server(settings, database_url, worker=False)
        yield OidcSite(server, issuer, log, outage)
        server.stop()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    def answering() -> bool:
        if process.poll() is not None:
            integration_unavailable(f"oidc-provider exited: {log.read_text()[-500:]}")
        return httpx.get(url, timeout=2).status_code == 200

    try:
        wait_for(answering, 30, "oidc-provider answering", ignoring=(httpx.HTTPError,))
    except AssertionError:
        integration_unavailable("oidc-provider did not answer within 30 s")


def _login(page: Any, site: OidcSite, path: str = "/ui/") -> None:
    """Log in at the provider (any password), starting from ``path``; lands on ``path``."""
    page.goto(f"{site.url}{path}")
    page.get_by_role("button", name="Log in with SLICES").click()
    page.wait_for_url(re.compile(r"http://127\.0\.0\.1:\d+/interaction/.*"))
    page.locator("input[name=login]").fill("olivia")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name=re.compile("Sign-in", re.IGNORECASE)).click()
    page.get_by_role("button", name=re.compile("Continue", re.IGNORECASE)).click()
    page.wait_for_url(f"{site.url}{path}")


def _session(page: Any, site: OidcSite) -> tuple[dict[str, Any], dict[str, Any]]:
    """The browser's session cookie, and its values (decrypted with the service's keys)."""
    cookie = next(c for c in page.context.cookies(f"{site.url}/ui/") if c["name"] == COOKIE)
    return cookie, json.loads(secret_box(site.server.settings).decrypt(cookie["value"].encode()))


def _after_expiry(id_token: str) -> None:
    """Wait until the id-token has expired."""
    time.sleep(max(0.0, oidc.stored_claims(id_token)["exp"] - time.time() + 0.5))


def _refresh_at_provider(site: OidcSite, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{site.issuer}/token", auth=site.client,
                      data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def test_oidc_login_and_logout(page: Any, oidc_site: OidcSite) -> None:
    """Log in at the provider, land on the dashboard as that user, log out (which revokes the
    refresh token at the provider)."""
    page.goto(f"{oidc_site.url}/ui/credentials")
    page.wait_for_url(re.compile(r".*/ui/login\?next=/ui/credentials.*"))
    assert page.get_by_role("button", name="Log in (dev)").count() == 0  # dev mode is off
    shot(page, "login-slices")
    _login(page, oidc_site, "/ui/credentials")
    assert "Logged in as olivia" in page.locator("#messages").inner_text()
    page.get_by_role("link", name="Resources").click()
    assert page.get_by_label("Experiment token").is_visible()  # writes need the experiment JWT
    shot(page, "dashboard-oidc")

    page.get_by_label("Experiment token").fill("not-a-token")
    page.get_by_role("button", name="Use this experiment").click()
    assert "refused" in page.locator("main").inner_text()

    page.goto(f"{oidc_site.url}/ui/credentials")  # no polling: its refresh token stays the one logging out
    _, values = _session(page, oidc_site)
    page.locator("nav details.dropdown summary").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))
    page.goto(f"{oidc_site.url}/ui/")
    page.wait_for_url(re.compile(r".*/ui/login\?.*"))
    assert _refresh_at_provider(oidc_site, values["refresh_token"]).json()["error"] == "invalid_grant"  # revoked


def test_forged_callback_refused(page: Any, oidc_site: OidcSite) -> None:
    """A callback this browser did not start (no state in its session) is refused."""
    page.goto(f"{oidc_site.url}/ui/auth/callback?code=stolen&state=guess")
    assert "no login is under way" in page.locator("main").inner_text()


def test_expired_id_token_is_refreshed(page: Any, oidc_site: OidcSite) -> None:
    """After the id-token expired the user goes on browsing: the service renews it (and the
    rotated refresh token) once, even for requests racing with the old cookie, and the
    session still ends when the login's does."""
    _login(page, oidc_site, "/ui/credentials")  # a page that does not poll
    cookie, first = _session(page, oidc_site)
    assert "refresh_token" in first and len(cookie["value"]) < MAX_COOKIE_BYTES
    refreshed = oidc_site.grants("refresh_token")

    _after_expiry(first["user_token"])
    page.goto(f"{oidc_site.url}/ui/")
    assert page.url == f"{oidc_site.url}/ui/" and page.locator("nav").get_by_text("olivia").is_visible()
    cookie, second = _session(page, oidc_site)
    assert oidc_site.grants("refresh_token") == refreshed + 1
    assert second["user_token"] != first["user_token"] and second["refresh_token"] != first["refresh_token"]
    assert oidc.stored_claims(second["user_token"])["exp"] > time.time()
    assert second["until"] == first["until"] and abs(cookie["expires"] - first["until"]) < 2

    page.goto(f"{oidc_site.url}/ui/credentials")
    _after_expiry(second["user_token"])
    landed = page.evaluate("Promise.all([1, 2, 3, 4].map(() => fetch('/ui/credentials').then(r => r.url)))")
    assert landed == [f"{oidc_site.url}/ui/credentials"] * 4  # one refresh answered all four
    assert oidc_site.grants("refresh_token") == refreshed + 2
    page.reload()
    assert page.url == f"{oidc_site.url}/ui/credentials"


def test_revoked_refresh_token_sends_to_login(page: Any, oidc_site: OidcSite) -> None:
    """A refresh token the provider revoked ends the session: the dashboard's next htmx poll
    takes the user to the login page, which says why."""
    _login(page, oidc_site)
    _, values = _session(page, oidc_site)
    revoked = httpx.post(f"{oidc_site.issuer}/token/revocation", auth=oidc_site.client,
                         data={"token": values["refresh_token"], "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200

    _after_expiry(values["user_token"])
    page.wait_for_url(f"{oidc_site.url}/ui/login?next=/ui/")  # HX-Redirect back to the page, not the fragment
    assert "could not be renewed" in page.locator("#messages").inner_text()
    assert page.get_by_role("button", name="Log in with SLICES").is_visible()
    assert "user_token" not in _session(page, oidc_site)[1]


def test_provider_outage_sends_to_login(page: Any, oidc_site: OidcSite, capfd: pytest.CaptureFixture[str]) -> None:
    """When the provider cannot renew an expired id-token the user is sent to log in again,
    and the service logs a warning."""
    _login(page, oidc_site, "/ui/credentials")
    _, values = _session(page, oidc_site)
    oidc_site.outage.touch()
    try:
        _after_expiry(values["user_token"])
        page.reload()
        page.wait_for_url(f"{oidc_site.url}/ui/login?next=/ui/credentials")
        assert "identity provider cannot be reached" in page.locator("#messages").inner_text()
    finally:
        oidc_site.outage.unlink()
    assert "web.session_refresh_unavailable" in capfd.readouterr().out


def test_refresh_refusals(oidc_site: OidcSite) -> None:
    """The refresh function against the provider: an unknown token is refused, an outage is
    told apart; revoking is best effort and never fails."""
    settings = oidc_site.server.settings

    async def check() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            with pytest.raises(Unauthorized, match="no id-token"):
                await oidc.refresh(http, settings, "not-a-refresh-token")
            oidc_site.outage.touch()
            try:
                with pytest.raises(ServiceUnavailable):
                    await oidc.refresh(http, settings, "not-a-refresh-token")
            finally:
                oidc_site.outage.unlink()
            await oidc.revoke(http, settings, "not-a-refresh-token")

    with ThreadPoolExecutor(1) as thread:  # this thread runs playwright's event loop
        thread.submit(asyncio.run, check()).result()
