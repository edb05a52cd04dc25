"""Finding 1 (high): dev mode must never switch itself on.

Each test performs the attack: asking a service laid out as the deploy files describe for an
admin token, and reaching a dev-mode service through a rebound DNS name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from dotenv import dotenv_values
from pydantic import ValidationError

from slices_blueprint.core.config import Settings
from tests.conftest import LiveServer, free_port
from tests.helpers import wait_answering
from tests.test_deploy import DEPLOY, unit_command


def test_dev_mode_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).dev_mode is False  # embedded database, loopback
    assert Settings(data_dir=tmp_path, dev_mode=True).dev_mode is True


@pytest.mark.parametrize("overrides", [
    {"host": "0.0.0.0"},
    {"public_url": "https://bi.example.org"},
    {"public_url": "http://127.0.0.1.nip.invalid:8000"},
])
def test_dev_mode_is_refused_off_loopback(tmp_path: Path, overrides: dict) -> None:
    with pytest.raises(ValidationError, match="dev_mode"):
        Settings(data_dir=tmp_path, dev_mode=True, **overrides)


def test_deploy_layout_hands_out_no_dev_tokens(tmp_path: Path) -> None:
    """The systemd unit with example.env: embedded database, loopback listener behind a proxy.
    The attacker asks the service (as the proxy would forward it) for an admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICES_BLUEPRINT_") and k != "DATABASE_URL"}
    env |= {k: v or "" for k, v in dotenv_values(DEPLOY / "example.env").items()}
    env |= {"SLICES_BLUEPRINT_ENCRYPTION_KEYS": f'["{Fernet.generate_key().decode()}"]',
            "SLICES_BLUEPRINT_DATA_DIR": str(tmp_path / "data"), "SLICES_BLUEPRINT_LOCAL_MICROVM_HOST": "false"}
    argv, unit_env = unit_command("slices-blueprint.service")
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env={**env, **unit_env}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{base}/readyz", proc, log, 120)
        proxied = {"Host": "bi.example.org", "X-Forwarded-Proto": "https"}
        for headers in (proxied, {}):
            minted = httpx.post(f"{base}/dev/tokens", json={"user": "admin"}, headers=headers)
            assert minted.status_code == 404, minted.text
            assert "token" not in minted.json()
            assert httpx.get(f"{base}/dev/issuer/jwks.json", headers=headers).status_code == 404
        page = httpx.get(f"{base}/ui/login", headers=proxied)
        assert "/login/dev" not in page.text  # no dev login form offered
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        login = httpx.post(f"{base}/ui/login/dev", headers=proxied | {"Cookie": cookie},
                           data={"csrf_token": csrf, "user": "admin", "project": "p", "experiment": "e"})
        assert login.status_code == 404, login.text  # not a CSRF refusal: the route is off
    finally:
        proc.terminate()
        proc.wait(30)
    assert "dev mode is off" in log.read_text()


def test_serve_says_when_it_runs_in_dev_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICES_BLUEPRINT_")}
    cli = [sys.executable, "-m", "slices_blueprint", "serve", "--dev", "--host", "0.0.0.0"]
    refused = subprocess.run(cli, env=env | {"SLICES_BLUEPRINT_DATA_DIR": str(tmp_path)},
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "dev_mode" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("host", ["rebound.attacker.invalid", "rebound.attacker.invalid:8000",
                                  "127.0.0.1.rebound.invalid", "localhost.invalid"])
def test_dns_rebinding_is_refused(live: LiveServer, http: httpx.Client, host: str) -> None:
    """A page on another origin whose name resolves to 127.0.0.1 calls the dev-mode service."""
    minted = http.post(f"{live.url}/dev/tokens", json={"user": "admin"}, headers={"Host": host})
    assert minted.status_code == 421 and "token" not in minted.json()
    assert http.get(f"{live.bi}/flavors", headers={"Host": host}).status_code == 421
    assert http.get(f"{live.url}/ui/login", headers={"Host": host}).status_code == 421


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2"])
def test_loopback_names_are_answered(live: LiveServer, http: httpx.Client, host: str) -> None:
    port = live.settings.port
    minted = http.post(f"{live.url}/dev/tokens", json={"user": "alice"}, headers={"Host": f"{host}:{port}"})
    assert minted.status_code == 200 and minted.json()["token"]


def test_dev_allowed_networks_admit_addresses_never_names(tmp_path: Path) -> None:
    from slices_blueprint.core.dev_guard import allowed

    networks = Settings(data_dir=tmp_path, dev_mode=True, dev_allowed_networks=["10.250.0.0/16"]).dev_allowed_networks
    assert allowed("10.250.3.1", networks) and allowed("localhost", networks)
    assert not allowed("10.251.0.1", networks) and not allowed("rebound.attacker.invalid", networks)
