"""Registration with the service and periodic heartbeats (capacity + metrics).

The agent hands its own token to the service at registration, a call authenticated by the
site's registration secret; the service keeps it encrypted and uses it to call the agent,
and the agent uses it on every heartbeat. A heartbeat answered 401/404 (the host was
removed, or the service lost it) makes the agent register again.
"""

from __future__ import annotations

import asyncio

import httpx
import structlog

from slices_blueprint.agent.auth import TokenKeeper
from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.manager import VMManager
from slices_blueprint.agent.metrics import host_capacity, snapshot

log = structlog.get_logger(__name__)


class Registrar:
    def __init__(self, settings: AgentSettings, tokens: TokenKeeper, manager: VMManager) -> None:
        self.settings = settings
        self.tokens = tokens
        self.manager = manager
        self.host_id: str | None = None
        self.client = httpx.AsyncClient(base_url=(settings.service_url or "").rstrip("/"),
                                        timeout=15)

    async def register(self) -> str:
        if not self.settings.registration_secret:
            raise RuntimeError("SLICES_AGENT_REGISTRATION_SECRET is needed to register")
        body = {
            "name": self.settings.name, "url": self.settings.url, "token": self.tokens.token,
            "vmm": self.manager.vmm.name, "network_mode": self.manager.mode,
            "labels": self.settings.labels, **host_capacity(self.manager),
        }
        secret = self.settings.registration_secret.get_secret_value()
        response = await self.client.post("/api/v1/hosts/register", json=body,
                                          headers={"Authorization": f"Bearer {secret}"})
        response.raise_for_status()
        self.host_id = response.json()["id"]
        log.info("agent.registered", host_id=self.host_id, service=self.settings.service_url)
        return self.host_id

    async def heartbeat(self) -> None:
        metrics = await snapshot(self.manager)
        body = {**host_capacity(self.manager), "metrics": metrics}
        response = await self.client.post(
            f"/api/v1/hosts/{self.host_id}/heartbeat", json=body,
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
        except (httpx.HTTPError, RuntimeError, KeyError) as exc:
            log.warning("agent.heartbeat_failed", error=str(exc) or type(exc).__name__)

    async def run(self) -> None:
        while True:
            await self.beat_once()
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def close(self) -> None:
        await self.client.aclose()
