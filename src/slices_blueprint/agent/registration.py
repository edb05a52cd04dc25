"""Registration with the service and periodic heartbeats (capacity + metrics).

The agent enrols once with the one-time token an admin issued for its name
(``SLICES_AGENT_ENROLMENT_TOKEN``), handing over its own token (``auth.py``) and its TLS
certificate (``tls.py``, pinned by the service). Every later registration, and every
heartbeat, is authenticated by its own token. A heartbeat answered 401/404 (the host was
removed, or the service can no longer read its token) makes the agent register again; when
that is refused too, an admin must issue a new enrolment (``--replace`` for a known name).
"""

from __future__ import annotations

import asyncio

import httpx
import structlog

from slices_blueprint.agent.auth import TokenKeeper
from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.manager import VMManager
from slices_blueprint.agent.metrics import host_capacity, snapshot
from slices_blueprint.agent.protocol import Heartbeat, HostRegistration, RegistrationOut
from slices_blueprint.agent.tls import AgentCertificate

log = structlog.get_logger(__name__)


class RegistrationRefused(RuntimeError):
    """The service accepted none of this agent's credentials."""


class Registrar:
    def __init__(self, settings: AgentSettings, tokens: TokenKeeper, manager: VMManager,
                 certificate: AgentCertificate) -> None:
        self.settings = settings
        self.tokens = tokens
        self.manager = manager
        self.certificate = certificate
        self.host_id: str | None = None
        self.client = httpx.AsyncClient(base_url=(settings.service_url or "").rstrip("/"),
                                        timeout=15)

    def _credentials(self) -> list[tuple[str, str]]:
        """``(kind, bearer)`` to try in turn: an enrolment token not used yet, then the
        host's own token (also after an enrolment whose answer was lost)."""
        enrolment = self.settings.enrolment_token
        unused = enrolment and not self.tokens.enrolment_used(enrolment.get_secret_value())
        own = [("host token", self.tokens.token)]
        return [("enrolment token", enrolment.get_secret_value()), *own] if unused else own

    async def register(self) -> str:
        body = HostRegistration(
            name=self.settings.name, url=self.settings.url, token=self.tokens.token,
            cert_pem=self.certificate.pem, vmm=self.manager.vmm.name,
            network_mode=self.manager.mode, labels=self.settings.labels,
            **host_capacity(self.manager),
        ).wire()
        refusals = []
        for kind, bearer in self._credentials():
            response = await self.client.post("/api/v1/hosts/register", json=body,
                                              headers={"Authorization": f"Bearer {bearer}"})
            if response.status_code in (401, 403, 409):
                refusals.append(f"{kind}: {response.status_code} {_detail(response)}")
                continue
            response.raise_for_status()
            if kind == "enrolment token":
                self.tokens.record_enrolment(bearer)
            self.host_id = RegistrationOut.model_validate(response.json()).id
            log.info("agent.registered", host_id=self.host_id, service=self.settings.service_url,
                     name=self.settings.name, using=kind, cert_sha256=self.certificate.sha256)
            return self.host_id
        raise RegistrationRefused(
            f"the service refused to register host {self.settings.name} ({'; '.join(refusals)}); "
            "an admin must issue an enrolment token (`slices-blueprint admin host-enrol "
            f"{self.settings.name}`, with --replace for a known host) for "
            "SLICES_AGENT_ENROLMENT_TOKEN")

    async def heartbeat(self) -> None:
        metrics = await snapshot(self.manager)
        body = Heartbeat(**host_capacity(self.manager), metrics=metrics)
        response = await self.client.post(
            f"/api/v1/hosts/{self.host_id}/heartbeat", json=body.model_dump(mode="json"),
            headers={"Authorization": f"Bearer {self.tokens.token}"},
        )
        if response.status_code in (401, 404):
            self.host_id = None
        response.raise_for_status()

    async def beat_once(self) -> None:
        """Register if needed, then send one heartbeat; failures are logged, not raised."""
        try:
            if self.host_id is None:
                await self.register()
            await self.heartbeat()
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:  # ValueError: a shape refused
            log.warning("agent.heartbeat_failed", error=str(exc) or type(exc).__name__)

    async def run(self) -> None:
        while True:
            await self.beat_once()
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def close(self) -> None:
        await self.client.aclose()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))
    except ValueError:
        return response.text[:200]
