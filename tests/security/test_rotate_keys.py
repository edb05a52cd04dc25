# ruff: noqa: F811  (the fixtures imported from host_fixtures are test arguments)
"""``admin rotate-keys`` re-encrypts the host tokens too: after the old key is dropped a real
agent's heartbeats still work. A host whose stored token no configured key can read is
answered 401 (re-enrol), never 500, and comes back with a replacing enrolment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import path_id
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.microvm.driver import MicroVMDriver
from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import wait_for
from tests.security.agents import Admin, AttackerAgent, start_agent
from tests.security.host_fixtures import agents  # noqa: F401 (fixture)


def test_rotated_keys_keep_hosts_working_and_unreadable_tokens_get_401(
        pg_admin_url: str, tmp_path: Path, http, agents) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    port = free_port()
    with fresh_database(pg_admin_url) as url:
        def serve(keys: list[str]):
            return start_server(make_settings(tmp_path / "svc", url, port, encryption_keys=keys,
                                              host_heartbeat_seconds=1), url, worker=False)

        service = serve([old])
        admin = Admin(service, http)
        agent = start_agent(tmp_path / "agent", "rotated", service_url=service.url,
                            enrolment_token=admin.enrol("rotated"))
        agents.append(agent)
        host_id = admin.wait_host("rotated")["id"]
        spare = AttackerAgent(tmp_path / "spare")  # a second host, by hand (admin-registered)
        spare_token = "s" * 32
        registered = http.post(f"{service.url}/api/v1/hosts/register", headers=admin.auth, json={
            "name": "spare", "url": spare.url, "token": spare_token, "cert_pem": spare.cert_pem,
            "vcpus": 1, "memory_mib": 64, "disk_free_mib": 1})
        assert registered.status_code == 201, registered.text
        spare_id = registered.json()["id"]
        service.stop()

        env = {**os.environ, "SLICES_BLUEPRINT_DATABASE_URL": url,
               "SLICES_BLUEPRINT_DATA_DIR": str(tmp_path / "svc"),
               "SLICES_BLUEPRINT_ENCRYPTION_KEYS": json.dumps([new, old])}
        rotated = subprocess.run([sys.executable, "-m", "slices_blueprint", "admin", "rotate-keys"],
                                 env=env, capture_output=True, text=True, timeout=120, check=False)
        assert rotated.returncode == 0, rotated.stderr
        assert "2 host tokens" in rotated.stdout, rotated.stdout

        service = serve([new])  # the old key dropped
        try:
            beat = f"{service.url}/api/v1/hosts/{host_id}/heartbeat"
            capacity = {"vcpus": 1, "memory_mib": 64, "disk_free_mib": 1}
            answer = http.post(beat, json=capacity,
                               headers={"Authorization": f"Bearer {agent.token}"})
            assert answer.status_code == 200, answer.text
            since = admin.hosts()["rotated"]["last_heartbeat_at"]
            # and the agent's own heartbeats go on
            wait_for(lambda: admin.hosts()["rotated"]["last_heartbeat_at"] > since, 15,
                     lambda: f"the agent's next heartbeat: {agent.log.read_text()[-2000:]}", interval=0.3)

            # a token encrypted with a key the service no longer has
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE hosts SET token_ciphertext = %s WHERE name = 'spare'",
                             (Fernet(Fernet.generate_key()).encrypt(spare_token.encode()),))
            auth = {"Authorization": f"Bearer {spare_token}"}
            lost = http.post(f"{service.url}/api/v1/hosts/{spare_id}/heartbeat", json=capacity,
                             headers=auth)
            assert lost.status_code == 401 and "register again" in lost.json()["detail"], lost.text
            again = {"name": "spare", "url": spare.url, "token": spare_token,
                     "cert_pem": spare.cert_pem, **capacity}
            refused = http.post(f"{service.url}/api/v1/hosts/register", json=again, headers=auth)
            assert refused.status_code == 401, refused.text
            with pytest.raises(ProviderError, match="cannot be decrypted"):
                asyncio.run(_status(service.settings, f"{path_id(spare_id, 'host')}/vm"))
            # the way back: an admin's replacing enrolment
            enrolment = {"Authorization": f"Bearer {admin.enrol('spare', replace=True)}"}
            back = http.post(f"{service.url}/api/v1/hosts/register", json=again, headers=enrolment)
            assert back.status_code == 201 and back.json()["id"] == spare_id, back.text
            assert http.post(f"{service.url}/api/v1/hosts/{spare_id}/heartbeat", json=capacity,
                             headers=auth).status_code == 200
        finally:
            spare.close()
            service.stop()


async def _status(settings, provider_resource_id: str) -> str:
    driver = MicroVMDriver(settings, Database(settings.database_url, pool_size=1))
    try:
        return (await driver.status(provider_resource_id)).state
    finally:
        await driver.close()
