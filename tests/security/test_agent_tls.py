# ruff: noqa: F811  (the fixtures imported from host_fixtures are test arguments)
"""The agent speaks TLS only, with a certificate it made in its data dir, and the service
trusts only the certificate pinned at enrolment: a man in the middle at the agent's URL, with
another certificate, is refused during the handshake (so it never sees the host's token) and
the refusal is logged. Real service, real agent processes, an attacker's real TLS server."""

from __future__ import annotations

import asyncio
import stat

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import path_id
from slices_blueprint.hosts.pinning import fingerprint
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.microvm import driver as microvm
from slices_blueprint.providers.microvm.driver import MicroVMDriver
from tests.helpers import wait_for
from tests.security.agents import Admin, AttackerAgent, start_agent
from tests.security.host_fixtures import agents, host_service  # noqa: F401 (fixtures)


def test_agent_serves_tls_only_with_a_private_key_of_its_own(tmp_path, agents) -> None:
    agent = start_agent(tmp_path / "a", "plain-check")
    agents.append(agent)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{agent.port}/healthz", timeout=5)  # no plain HTTP
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{agent.url}/healthz", timeout=5)  # self-signed: not trusted by default
    with agent.client() as pinned:
        assert pinned.get("/v1/host").status_code == 200
    tls = agent.data_dir / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600


def test_a_man_in_the_middle_with_another_certificate_is_refused(
        host_service, http, agents, tmp_path, monkeypatch) -> None:
    admin = Admin(host_service, http)
    honest = start_agent(tmp_path / "honest", "pinned", service_url=host_service.url,
                         enrolment_token=admin.enrol("pinned"))
    agents.append(honest)
    row = admin.wait_host("pinned")
    assert row["cert_sha256"] == fingerprint(honest.cert_pem) and row["url"].startswith("https://")
    vm = f"{path_id(row['id'], 'host')}/resource_test-site1_mitm"

    async def status() -> str:
        settings = host_service.settings
        driver = MicroVMDriver(settings, Database(settings.database_url, pool_size=1))
        try:
            return (await driver.status(vm)).state
        finally:
            await driver.close()

    assert asyncio.run(status()) == "gone"  # the pinned agent answers: no such VM
    honest.stop()
    mitm = AttackerAgent(tmp_path / "mitm", port=honest.port)  # same URL, its own certificate
    monkeypatch.setattr(microvm, "log", structlog.get_logger("microvm-under-test"))
    try:
        with capture_logs() as logs, pytest.raises(ProviderError) as refused:
            asyncio.run(status())
    finally:
        mitm.close()
    assert "presented a TLS certificate other than the one pinned" in str(refused.value)
    assert mitm.seen == []  # the handshake failed before any request (and its token) was sent
    mismatch = [e for e in logs if e["event"] == "microvm.agent_certificate_mismatch"]
    assert mismatch and mismatch[0]["pinned_sha256"] == row["cert_sha256"], logs
    # the real agent back at its URL is trusted again
    agents.append(start_agent(honest.data_dir, "pinned", port=honest.port))
    wait_for(lambda: asyncio.run(status()) == "gone", 10, "the pinned agent answering again")
