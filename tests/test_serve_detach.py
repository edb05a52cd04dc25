"""``serve --detach`` returns once the service is ready, so the next line of a script works;
in dev mode "ready" includes the local microVM host; stopping ``serve`` says what it leaves."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from slices_blueprint.core.api_paths import API_PREFIX
from tests.conftest import free_port, fresh_database
from tests.helpers import wait_for


@pytest.fixture
def service_env(pg_admin_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a ``serve`` of its own: a fresh database, a data dir, a free port,
    and the client pointed at it."""
    port = free_port()
    with fresh_database(pg_admin_url) as url:
        yield {**os.environ, "SLICES_BLUEPRINT_DATABASE_URL": url, "SLICES_BLUEPRINT_DATA_DIR": str(tmp_path / "data"),
               "SLICES_BLUEPRINT_PORT": str(port), "SLICES_BLUEPRINT_URL": f"http://127.0.0.1:{port}",
               "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent", "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]'}


def cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slices_blueprint", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def detached_pid(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stderr
    found = re.search(r"stop it with: kill (\d+)", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def stop(pid: int, log: Path) -> str:
    """SIGTERM the detached service, wait for it to end, and answer its log."""
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not psutil.pid_exists(pid), 60, lambda: f"serve (pid {pid}) stopping: {log.read_text()[-2000:]}")
    return log.read_text()


def test_serve_detach_returns_when_ready_and_the_next_line_works(service_env, tmp_path) -> None:
    started = cli(service_env, "serve", "--dev", "--detach")
    pid = detached_pid(started)
    log = tmp_path / "data" / "serve.log"
    try:
        assert f"is ready on {service_env['SLICES_BLUEPRINT_URL']}" in started.stdout
        token = cli(service_env, "dev", "token", "--experiment", "exp1")  # at once: no sleep, no retry
        assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
        assert cli(service_env, "wait-ready", "--timeout", "5").returncode == 0
    finally:
        text = stop(pid, log)
    # the serving process froze what start-up made, out of the garbage collector's walks
    assert re.search(r"gc\.tuned.*frozen_objects\W+[1-9]\d{4,}", text), text[-3000:]
    late = cli(service_env, "wait-ready", "--timeout", "1")
    assert late.returncode == 1 and "is not ready after 1 s" in late.stderr


def test_serve_with_two_api_processes_answers_from_both_and_each_tunes_its_collector(service_env, tmp_path) -> None:
    """``serve --workers 2``: each process builds its app from the environment the parent
    passes (``app_from_environment``) and freezes its own start-up objects."""
    started = cli(service_env, "serve", "--dev", "--detach", "--no-worker", "--workers", "2")
    pid = detached_pid(started)
    log = tmp_path / "data" / "serve.log"
    try:
        token = cli(service_env, "dev", "token", "--experiment", "two").stdout.strip()
        for _ in range(20):  # connections spread over both processes; each answers in full
            answer = httpx.get(f"{service_env['SLICES_BLUEPRINT_URL']}/apis/bi.slices.eu/v1alpha2/resources",
                               headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200 and answer.json() == [], answer.text
    finally:
        text = stop(pid, log)
    assert len(re.findall(r"gc\.tuned", text)) == 2, text[-3000:]


def test_serve_detach_says_why_the_service_did_not_start(service_env, tmp_path) -> None:
    env = {**service_env, "SLICES_BLUEPRINT_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = cli(env, "serve", "--dev", "--detach", "--timeout", "60")
    assert result.returncode == 1
    assert "the service exited with status" in result.stderr and "serve.log" in result.stderr


@pytest.mark.microvm
def test_ready_waits_for_the_local_host_and_stopping_says_so(service_env, tmp_path, http) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("the local microVM host needs qemu-system-x86_64")
    env = {**service_env, "SLICES_BLUEPRINT_PROVIDERS": '["test-double", "microvm"]'}
    started = cli(env, "serve", "--dev", "--detach")
    pid = detached_pid(started)
    log = tmp_path / "data" / "serve.log"
    try:
        admin = cli(env, "dev", "token", "--user", "admin").stdout.strip()
        hosts = httpx.get(f"{env['SLICES_BLUEPRINT_URL']}{API_PREFIX}/hosts",
                          headers={"Authorization": f"Bearer {admin}"}).json()
        assert [(h["name"], h["status"]) for h in hosts] == [("local", "active")], hosts  # registered when ready
        assert hosts[0]["last_heartbeat_at"]
    finally:
        said = stop(pid, log)
    assert "local microVM host stopped" in said
