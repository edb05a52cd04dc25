"""A local microVM host for ``serve``: the agent as a child process on loopback, enrolled
with this very service, so a newcomer's first run can create microVMs at once. ``serve``
issues it a fresh enrolment token (replacing the host ``local``) at every start.

It always uses QEMU user-mode networking (SSH forwarded on 127.0.0.1:22000+), so it changes
nothing in the machine's network, root or not. The agent keeps its VMs across ``serve``
restarts (they are re-adopted).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys

import structlog

from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.hosts.service import create_enrolment

log = structlog.get_logger(__name__)


def local_host_problem() -> str | None:
    """Why a local host cannot run here (``None`` when it can)."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
    return None


def local_agent_port(settings: Settings) -> int:
    """Where the local agent listens: the service's port + 1 when that is free, else any
    free loopback port (something else may hold port + 1)."""
    for port in (settings.port + 1, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError("no free loopback port for the local agent")


LOCAL_HOST = "local"


def enrol_local_host(settings: Settings, database_url: str) -> str:
    """A one-time enrolment token for the local host (its identity replaced if it exists)."""
    async def enrol() -> str:
        db = Database(database_url, pool_size=1)
        try:
            async with db.session() as session:
                issued = await create_enrolment(session, settings, LOCAL_HOST, "system:serve",
                                                replace=True)
                return issued.token
        finally:
            await db.dispose()

    return asyncio.run(enrol())


def local_agent_env(settings: Settings, enrolment_token: str, port: int) -> dict[str, str]:
    """The agent's settings (``SLICES_AGENT_*``) for a local host of this service."""
    return {
        "SLICES_AGENT_DATA_DIR": str(settings.data_dir / "agent"),
        "SLICES_AGENT_NAME": LOCAL_HOST,
        "SLICES_AGENT_LISTEN_HOST": "127.0.0.1",
        "SLICES_AGENT_LISTEN_PORT": str(port),
        "SLICES_AGENT_PUBLIC_HOST": "127.0.0.1",
        "SLICES_AGENT_FORWARD_BIND": "127.0.0.1",
        "SLICES_AGENT_NETWORK_MODE": "user",
        "SLICES_AGENT_SERVICE_URL": settings.service_url,
        "SLICES_AGENT_ENROLMENT_TOKEN": enrolment_token,
    }


def start_local_agent(settings: Settings, enrolment_token: str,
                      port: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m slices_blueprint.agent`` for this service (on ``port``, default
    :func:`local_agent_port`); the caller stops it."""
    port = port or local_agent_port(settings)
    env = local_agent_env(settings, enrolment_token, port)
    data_dir = settings.data_dir / "agent"
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "agent.log").open("ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "slices_blueprint.agent"],
                                env={**os.environ, **env}, stdout=log_file,
                                stderr=subprocess.STDOUT)
    log.info("agent.local_started", pid=proc.pid, port=port, log=str(data_dir / "agent.log"))
    return proc


def local_vms_running(settings: Settings) -> list[dict[str, object]]:
    """The local host's VMs whose process still runs (name, pid, SSH port), from the agent's
    VM records (``agent/vms/<id>/vm.json``, read as plain JSON: the agent owns the format)."""
    running = []
    for record in sorted((settings.data_dir / "agent" / "vms").glob("*/vm.json")):
        try:
            vm = json.loads(record.read_text())
            pid = int(vm["pid"])
            os.kill(pid, 0)  # signal 0: does it live?
        except (OSError, ValueError, KeyError, TypeError):
            continue
        running.append({"name": vm["spec"]["name"], "pid": pid, "ssh_port": vm.get("ssh_port")})
    return running
