"""Logging in to the UI against a real OpenID provider (npm ``oidc-provider``) on loopback,
with dev mode off: authorization code + PKCE, id-token verified like any API token."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import shot
from tests.conftest import (
    LiveServer,
    free_port,
    integration_unavailable,
    make_settings,
    start_server,
)

pytestmark = pytest.mark.browser
NODE_MODULES = Path(os.environ.get("SLICES_BLUEPRINT_NPM_PREFIX", "/opt/slices-blueprint-npm")) / "node_modules"
PROVIDER_SCRIPT = Path(__file__).with_name("oidc_provider.mjs")


@pytest.fixture(scope="module")
def oidc_site(database_url: str, data_dir: Path) -> Iterator[LiveServer]:
    """The oidc-provider on one loopback port, the service (dev mode off) on another."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "oidc-provider").is_dir():
        integration_unavailable(f"node or the npm package oidc-provider is missing (npm install --prefix {NODE_MODULES.parent} $(cat .ci/npm-browser.txt))")
    provider_port, service_port = free_port(), free_port()
    issuer, service_url, secret = f"http://127.0.0.1:{provider_port}", f"http://127.0.0.1:{service_port}", secrets.token_urlsafe(24)
    env = os.environ | {"PORT": str(provider_port), "CLIENT_ID": service_url, "CLIENT_SECRET": secret,
                        "REDIRECT_URI": f"{service_url}/ui/auth/callback", "NODE_MODULES": str(NODE_MODULES)}
    process = subprocess.Popen([node, str(PROVIDER_SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"{issuer}/.well-known/openid-configuration", process)
        settings = make_settings(
            data_dir, database_url, service_port, dev_mode=False, providers=["vm", "k8s", "microvm"],
            trusted_issuers=[{"issuer": issuer, "kind": "user"}], oidc_client_id=service_url,
            oidc_client_secret=secret, oidc_discovery_url=f"{issuer}/.well-known/openid-configuration",
        )
        server = start_server(settings, database_url, worker=False)
        yield server
        server.stop()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            integration_unavailable(f"oidc-provider exited: {output[-500:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    integration_unavailable("oidc-provider did not answer within 30 s")


def test_oidc_login_and_logout(page: Any, oidc_site: LiveServer) -> None:
    """Log in at the provider, land on the dashboard as that user, log out."""
    page.goto(f"{oidc_site.url}/ui/credentials")
    page.wait_for_url(re.compile(r".*/ui/login\?next=/ui/credentials.*"))
    assert page.get_by_role("button", name="Log in (dev)").count() == 0  # dev mode is off
    shot(page, "login-slices")
    page.get_by_role("button", name="Log in with SLICES").click()

    page.wait_for_url(re.compile(r"http://127\.0\.0\.1:\d+/interaction/.*"))
    page.locator("input[name=login]").fill("olivia")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name=re.compile("Sign-in", re.IGNORECASE)).click()
    page.get_by_role("button", name=re.compile("Continue", re.IGNORECASE)).click()

    page.wait_for_url(f"{oidc_site.url}/ui/credentials")
    assert "Logged in as olivia" in page.locator("#messages").inner_text()
    page.get_by_role("link", name="Resources").click()
    assert page.get_by_label("Experiment token").is_visible()  # writes need the experiment JWT
    shot(page, "dashboard-oidc")

    page.get_by_label("Experiment token").fill("not-a-token")
    page.get_by_role("button", name="Use this experiment").click()
    assert "refused" in page.locator("main").inner_text()

    page.goto(f"{oidc_site.url}/ui/")
    page.locator("nav details.dropdown summary").click()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))
    page.goto(f"{oidc_site.url}/ui/")
    page.wait_for_url(re.compile(r".*/ui/login\?.*"))


def test_forged_callback_refused(page: Any, oidc_site: LiveServer) -> None:
    """A callback this browser did not start (no state in its session) is refused."""
    page.goto(f"{oidc_site.url}/ui/auth/callback?code=stolen&state=guess")
    assert "no login is under way" in page.locator("main").inner_text()
