"""The deployment files: systemd accepts the units, and their commands, run the way systemd
would run them with ``deploy/example.env``, start a service and a worker that does its jobs.

(The Dockerfile and compose file need a Docker engine, which this machine does not have.)
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from dotenv import dotenv_values

from tests.conftest import free_port, fresh_database, integration_unavailable
from tests.helpers import wait_answering, wait_for

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = ("slices-blueprint.service", "slices-blueprint-worker@.service", "slices-blueprint-agent.service")
CLI = str(Path(sys.executable).with_name("slices-blueprint"))


def _unit_root(tmp_path: Path) -> Path:
    """A file system root holding systemd's own units, ours, and the files ours name."""
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(DEPLOY / "systemd" / unit, root / "etc/systemd/system")
    program = root / "opt/slices-blueprint/bin/slices-blueprint"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    settings = root / "etc/slices-blueprint"
    settings.mkdir()
    shutil.copy(DEPLOY / "example.env", settings / "slices-blueprint.env")
    (settings / "agent.env").touch()
    return root


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        integration_unavailable("systemd-analyze is missing (apt-get install systemd)")
    root = _unit_root(tmp_path)
    checked = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "slices-blueprint.service",
         "slices-blueprint-worker@1.service", "slices-blueprint-agent.service"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    # systemd-analyze answers 0 even for settings it ignores: any message is a finding
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def unit_command(unit: str, instance: str = "") -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart (specifiers expanded) and Environment= values."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / unit)
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"].replace("%i", instance).replace("%H", socket.gethostname()))
    assert argv[0] == "/opt/slices-blueprint/bin/slices-blueprint"
    environment = dict(item.split("=", 1) for item in shlex.split(service.get("Environment", "")))
    return [CLI, *argv[1:]], environment


@pytest.fixture
def unit_env(pg_admin_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """example.env as the EnvironmentFile, with this test's database and data directory."""
    with fresh_database(pg_admin_url) as url:
        yield {**os.environ, **{k: v or "" for k, v in dotenv_values(DEPLOY / "example.env").items()},
               "DATABASE_URL": url, "SLICES_BLUEPRINT_DATA_DIR": str(tmp_path / "data")}


def test_example_env_must_get_a_real_key_first(unit_env: dict[str, str]) -> None:
    argv, environment = unit_command("slices-blueprint.service")
    refused = subprocess.run(argv, env={**unit_env, **environment}, capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode == 2
    assert "encryption_keys: Value error, key 1 is not a Fernet key" in refused.stderr
    assert "replace-with-a-fernet-key" not in refused.stderr + refused.stdout  # never echoed


def test_service_and_worker_units_run_and_do_jobs(unit_env: dict[str, str], tmp_path: Path) -> None:
    env = {**unit_env, "SLICES_BLUEPRINT_ENCRYPTION_KEYS": f'["{Fernet.generate_key().decode()}"]'}
    serve, serve_env = unit_command("slices-blueprint.service")
    port = free_port()
    serve[serve.index("--port") + 1] = str(port)
    worker, worker_env = unit_command("slices-blueprint-worker@.service", instance="1")
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("serve", "worker")}
    processes = [subprocess.Popen(argv, env={**env, **extra}, stdout=logs[name], stderr=subprocess.STDOUT)
                 for name, argv, extra in (("serve", serve, serve_env), ("worker", worker, worker_env))]
    try:
        wait_answering(f"http://127.0.0.1:{port}/readyz", processes[0], tmp_path / "serve.log", 60)
        # the service queues a catalog sync at start; only the worker unit runs jobs
        with psycopg.connect(unit_env["DATABASE_URL"], autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM events WHERE action = 'catalog.sync'"
                                          " AND outcome = 'ok'").fetchone()[0], 90,
                     lambda: f"the worker syncing the catalog: {(tmp_path / 'worker.log').read_text()[-2000:]}",
                     interval=0.3)
        assert f"name=worker-1@{socket.gethostname()}" in (tmp_path / "worker.log").read_text()
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
    assert [p.returncode for p in processes] == [0, 0], "SIGTERM (systemctl stop) must end them cleanly"
