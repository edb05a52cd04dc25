# ruff: noqa: F811  (the fixtures imported from host_fixtures are test arguments)
"""Every microVM host has its own identity. Against the real service (real PostgreSQL, real
HTTP) and real agent processes (no VM booted): an enrolled host's name cannot be taken over
(replayed or foreign enrolment tokens, another host's token, an admin, a second agent under
the same name), and a create never adopts a VM from a host its placement does not name,
however willingly that host answers for it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys

import psycopg
import pytest

from slices_blueprint.core.database import Database
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.hosts import service as hosts
from slices_blueprint.hosts.models import Host
from slices_blueprint.hosts.pinning import fingerprint
from slices_blueprint.providers.base import NodeSpec, ProviderError
from slices_blueprint.providers.microvm.driver import MicroVMDriver
from tests.helpers import some_certificate, wait_for
from tests.security.agents import Admin, AttackerAgent, start_agent
from tests.security.host_fixtures import agents, host_service  # noqa: F401 (fixtures)


def registration(name: str, url: str, token: str, cert_pem: str) -> dict:
    return {"name": name, "url": url, "token": token, "cert_pem": cert_pem, "vcpus": 64,
            "memory_mib": 65536, "disk_free_mib": 100_000}


def test_an_enrolled_hosts_name_cannot_be_taken_over(host_service, http, agents, tmp_path) -> None:
    admin = Admin(host_service, http)
    victim_enrolment = admin.enrol("victim")
    victim = start_agent(tmp_path / "victim", "victim", service_url=host_service.url,
                         enrolment_token=victim_enrolment)
    agents.append(victim)
    pinned = admin.wait_host("victim")
    assert pinned["url"] == victim.url and pinned["cert_sha256"] == fingerprint(victim.cert_pem)

    # a second, real agent calling itself "victim", with a token enrolled for another name
    impostor = start_agent(tmp_path / "impostor", "victim", service_url=host_service.url,
                           enrolment_token=admin.enrol("mallory"))
    agents.append(impostor)
    wait_for(lambda: "the service refused to register host victim" in impostor.log.read_text(), 20,
             lambda: f"the impostor refused: {impostor.log.read_text()[-2000:]}")

    # and by hand, the same attacker with everything it could have: its own host's token,
    # the victim's enrolment token (used: replayed), a valid enrolment for another name
    mallory = start_agent(tmp_path / "mallory", "mallory", service_url=host_service.url,
                          enrolment_token=admin.enrol("mallory"))
    agents.append(mallory)
    admin.wait_host("mallory")
    register = f"{host_service.url}/api/v1/hosts/register"
    takeover = registration("victim", mallory.url, mallory.token, mallory.cert_pem)
    attempts = {
        "victim's used enrolment": (victim_enrolment, 401),
        "mallory's host token": (mallory.token, 401),
        "an enrolment for another name": (admin.enrol("spare"), 403),
        "an admin's token": (admin.auth["Authorization"].split()[1], 409),
        "no token at all": ("", 401),
    }
    for what, (bearer, status) in attempts.items():
        answer = http.post(register, json=takeover,
                           headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
        assert answer.status_code == status, (what, answer.status_code, answer.text)
        assert answer.json()["detail"], what
    refused = admin.enrol_answer("victim")  # an admin cannot even issue one by mistake
    assert refused.status_code == 409 and "already registered" in refused.json()["detail"]

    after = admin.hosts()
    assert after["victim"]["id"] == pinned["id"] and after["victim"]["url"] == victim.url
    assert after["victim"]["cert_sha256"] == pinned["cert_sha256"]
    assert "spare" not in after  # the refused attempt did not use up the enrolment
    # the victim itself still registers again (restart) with its own token only
    victim.stop()
    victim = start_agent(victim.data_dir, "victim", port=victim.port, service_url=host_service.url,
                         enrolment_token=victim_enrolment)
    agents.append(victim)
    def beating_again() -> dict | None:
        host = admin.hosts()["victim"]
        return host if host["last_heartbeat_at"] > pinned["last_heartbeat_at"] else None

    again = wait_for(beating_again, 20, "the restarted victim's heartbeat")
    assert again["id"] == pinned["id"] and again["last_heartbeat_at"] > pinned["last_heartbeat_at"]
    assert "refused" not in victim.log.read_text()


def test_a_create_adopts_no_vm_from_a_host_its_placement_does_not_name(
        host_service, http, agents, tmp_path) -> None:
    admin = Admin(host_service, http)
    honest = start_agent(tmp_path / "honest", "honest", service_url=host_service.url,
                         enrolment_token=admin.enrol("honest"))
    agents.append(honest)
    honest_row = admin.wait_host("honest")
    # an enrolled host gone bad: it claims to run every VM it is asked about
    attacker = AttackerAgent(tmp_path / "attacker")
    try:
        enrolled = http.post(f"{host_service.url}/api/v1/hosts/register",
                             headers={"Authorization": f"Bearer {admin.enrol('foreign')}"},
                             json=registration("foreign", attacker.url, "f" * 32,
                                               attacker.cert_pem) | {"vcpus": 0, "memory_mib": 0})
        assert enrolled.status_code == 201, enrolled.text
        spec = NodeSpec(resource_id="resource_test-site1_adopt", name="secret-vm",
                        experiment_id="e", project_id="p", image_location="no-such-image",
                        image_default_username="root", flavor_ref=None, vcpus=1, ram_mib=128,
                        disk_mb=64, ssh_authorized_keys=["ssh-ed25519 AAAA victim@key"],
                        userdata="#!/bin/sh\necho secret-userdata\n")

        async def create() -> str:
            db = Database(host_service.settings.database_url, pool_size=1)
            driver = MicroVMDriver(host_service.settings, db)
            try:
                with pytest.raises(ProviderError) as failed:
                    await driver.create(spec, progress)
                async with db.session() as session:  # a retry after a crash: booked on honest
                    await hosts.place(session, host_service.settings, spec.resource_id, 1, 128)
                with pytest.raises(ProviderError) as retried:
                    await driver.create(spec, progress)
                return f"{failed.value} | {retried.value}"
            finally:
                await driver.close()

        outcome = asyncio.run(create())
    finally:
        attacker.close()
    # both attempts went to the host placement chose, which refused the unknown image
    refusal = "microVM failed on host honest: unknown image 'no-such-image'"
    assert outcome.count(refusal) == 2, outcome
    assert attacker.seen == [], attacker.seen  # never asked: no token, keys or user-data sent
    assert honest_row["id"] in {h["id"] for h in admin.hosts().values()}


async def progress(percent: int, message: str) -> None:
    return None


def test_enrolment_tokens_are_single_use_expiring_and_stored_hashed(
        host_service, http, tmp_path) -> None:
    url = host_service.settings.database_url
    env = {**os.environ, "SLICES_BLUEPRINT_DATABASE_URL": url,
           "SLICES_BLUEPRINT_DATA_DIR": str(host_service.settings.data_dir)}

    def cli_enrol(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "slices_blueprint", "admin", "host-enrol", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    issued = cli_enrol("cli-host")
    assert issued.returncode == 0, issued.stderr
    prefix = "SLICES_AGENT_ENROLMENT_TOKEN="
    (line,) = [x for x in issued.stdout.splitlines() if x.startswith(prefix)]
    token = line.split("=", 1)[1]
    assert (issued.stdout + issued.stderr).count(token) == 1  # printed once, never logged
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT * FROM host_enrolments WHERE name = 'cli-host'").fetchall()
    assert len(stored) == 1 and hashlib.sha256(token.encode()).hexdigest() in stored[0]
    assert all(token not in str(value) for value in stored[0])  # only its hash is kept

    body = registration("cli-host", "https://cli-host.invalid:8700", "c" * 32,
                        some_certificate(tmp_path / "cli-host"))
    register = f"{host_service.url}/api/v1/hosts/register"
    first = http.post(register, json=body, headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 201, first.text
    replayed = http.post(register, json=body | {"token": "r" * 32},
                         headers={"Authorization": f"Bearer {token}"})
    assert replayed.status_code == 401, replayed.text  # used up
    taken = cli_enrol("cli-host")
    assert taken.returncode == 1 and "already registered" in taken.stderr

    late = Admin(host_service, http).enrol("late-host")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE host_enrolments SET expires_at = now() - interval '1 second' "
                     "WHERE name = 'late-host'")
    expired = http.post(register, headers={"Authorization": f"Bearer {late}"},
                        json=registration("late-host", "https://late.invalid:8700", "l" * 32,
                                          body["cert_pem"]))
    assert expired.status_code == 401, expired.text


def test_a_host_registered_before_the_upgrade_returns_with_its_own_token(
        host_service, http, agents, tmp_path) -> None:
    """A row from before revision 0003 (plain HTTP, nothing pinned) is not called, nor placed
    on, until its upgraded agent registers again with its own token over HTTPS."""
    settings, token = host_service.settings, "legacy-host-token-0123456789"

    async def legacy_row() -> str:
        db = Database(settings.database_url, pool_size=1)
        try:
            async with db.session() as session:
                host = Host(name="legacy", url="http://legacy.invalid:8700", status=hosts.ACTIVE,
                            token_ciphertext=secret_box(settings).encrypt(token.encode()),
                            vcpus=8, memory_mib=8192, disk_free_mib=1000, labels={}, metrics={},
                            last_heartbeat_at=utcnow())
                session.add(host)
                await session.flush()
                host_id = str(host.id)
            async with db.session() as session:
                with pytest.raises(hosts.NoCapacity):  # nothing pinned: never placed on
                    await hosts.place(session, settings, "resource_test-site1_legacy", 1, 128)
            driver = MicroVMDriver(settings, db)
            with pytest.raises(ProviderError, match="no pinned TLS certificate"):
                await driver.status(f"{host_id}/resource_test-site1_legacy")
            return host_id
        finally:
            await db.dispose()

    host_id = asyncio.run(legacy_row())
    agent = start_agent(tmp_path / "legacy", "legacy", service_url=host_service.url, token=token)
    agents.append(agent)
    back = Admin(host_service, http).wait_host("legacy")
    assert str(path_id(back["id"], "host")) == host_id
    assert back["url"] == agent.url and back["cert_sha256"] == fingerprint(agent.cert_pem)
