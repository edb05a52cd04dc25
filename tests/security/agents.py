"""Real agents (``python -m slices_blueprint.agent`` processes on loopback, user-mode
networking, no VM booted) and an attacker's HTTPS server, for the host identity tests."""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.tls import ensure_certificate
from slices_blueprint.hosts.pinning import pinned_context
from tests.conftest import LiveServer, free_port
from tests.helpers import Api, wait_answering, wait_for


@dataclass
class AgentProcess:
    name: str
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def cert_pem(self) -> str:
        return (self.data_dir / "tls" / "cert.pem").read_text()

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=pinned_context(self.cert_pem), timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def start_agent(data_dir: Path, name: str, port: int | None = None,
                **settings: str) -> AgentProcess:
    """An agent process on 127.0.0.1 (``settings``: more ``SLICES_AGENT_*``, lower case)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "SLICES_AGENT_DATA_DIR": str(data_dir), "SLICES_AGENT_NAME": name,
        "SLICES_AGENT_LISTEN_HOST": "127.0.0.1", "SLICES_AGENT_LISTEN_PORT": str(port),
        "SLICES_AGENT_NETWORK_MODE": "user", "SLICES_AGENT_FORWARD_BIND": "127.0.0.1",
        "SLICES_AGENT_HEARTBEAT_SECONDS": "1",
        **{f"SLICES_AGENT_{k.upper()}": v for k, v in settings.items()},
    }
    agent = AgentProcess(name, data_dir, port, proc=None)  # type: ignore[arg-type]
    with agent.log.open("ab") as log:
        agent.proc = subprocess.Popen([sys.executable, "-m", "slices_blueprint.agent"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
    wait_answering(f"{agent.url}/healthz", agent.proc, agent.log, 30,
                   verify=lambda: pinned_context(agent.cert_pem))
    return agent


class _Recording(http.server.BaseHTTPRequestHandler):
    """Answers 200 with a plausible running VM to every request, and records each one."""

    seen: ClassVar[list[dict[str, Any]]]

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.seen.append({"method": self.command, "path": self.path,
                          "authorization": self.headers.get("authorization"),
                          "body": self.rfile.read(length).decode() if length else ""})
        vm_id = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        body = json.dumps({
            "id": vm_id, "name": "captured", "state": "running", "reason": None,
            "guest_ready": True, "vcpus": 1, "memory_mib": 128, "disk_mib": 64,
            "ipv4": "172.30.0.9/24", "network_mode": "user", "labels": {},
            "ssh": {"host": "127.0.0.1", "port": 2222, "user": "root"},
            "created_at": "2026-12-06T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        return None


@dataclass
class AttackerAgent:
    """An attacker's HTTPS server with its own self-signed certificate (made like an agent
    makes its own) on 127.0.0.1: it claims every VM it is asked about."""

    directory: Path
    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = AgentSettings(data_dir=self.directory, name="attacker", listen_port=self.port)
        certificate = ensure_certificate(settings)
        self.cert_pem = certificate.pem
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        handler = type("Handler", (_Recording,), {"seen": self.seen})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Admin:
    """The dev admin issuing enrolments and listing hosts over the real API."""

    def __init__(self, service: LiveServer, http: httpx.Client) -> None:
        self.service, self.http = service, http
        self.auth = {"Authorization": f"Bearer {Api(service, http).token('admin')}"}

    def enrol(self, name: str, replace: bool = False) -> str:
        answer = self.enrol_answer(name, replace)
        assert answer.status_code == 201, answer.text
        return answer.json()["token"]

    def enrol_answer(self, name: str, replace: bool = False) -> httpx.Response:
        return self.http.post(f"{self.service.url}/api/v1/hosts/enrolments", headers=self.auth,
                              json={"name": name, "replace": replace})

    def hosts(self) -> dict[str, dict]:
        listed = self.http.get(f"{self.service.url}/api/v1/hosts", headers=self.auth).json()
        return {h["name"]: h for h in listed}

    def wait_host(self, name: str, timeout: float = 30) -> dict:
        def beating() -> dict | None:
            host = self.hosts().get(name)
            return host if host is not None and host["metrics"] else None

        return wait_for(beating, timeout, f"host {name} registering with a heartbeat")
