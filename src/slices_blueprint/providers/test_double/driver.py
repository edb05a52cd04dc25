"""TEST DOUBLE provider (flavor type ``test-double``): no real compute behind it.

It exists for the foundation's tests and benchmarks, where the API, queue and state
machine are under test rather than a cloud. It refuses to load outside dev mode (see
``Settings``). Its "nodes" are JSON files under ``data_dir/test-double`` so that several
worker processes, and a worker restarted after SIGKILL, see the same provider state; each
file counts how often the node was really created, so tests can prove nothing was made twice.

``request_config`` knobs: ``delay_s`` (seconds to "boot"), ``fail`` (a reason to fail with),
``transient_failures`` (how many attempts fail with a retryable error first),
``placement_after_s`` (no place for the node until this many seconds after the first attempt:
:class:`AwaitingPlacement`, as a microVM host still starting), ``unreachable_on_delete`` (its
node's delete always fails with a retryable error, as a provider that stays unreachable).

Each node's file also records what its last create or reset was asked to place in it
(``files``: path, mode, content) and let it reach (``guest_services``), for tests. Its
console log is ``<node>.console`` beside it (``logs``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import (
    AwaitingPlacement,
    Catalog,
    CatalogFlavor,
    CatalogImage,
    ComputeDriver,
    ManagedNode,
    NodeInfo,
    NodeSpec,
    Progress,
    ProviderError,
    SessionSource,
    TransientProviderError,
)


class TestDoubleDriver(ComputeDriver):
    """A file-backed stand-in for a cloud; see the module docstring."""

    __test__ = False  # not a pytest class
    flavor_type = "test-double"
    forwards_guest_services = True  # it records them, as a microVM host would forward them
    chooses_networks = True  # it records them, as the cloud it stands in for would attach them

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: bytes | None, selected: str | None,
        *, db: SessionSource | None = None,
    ) -> TestDoubleDriver:
        return cls(settings.data_dir / "test-double")

    def _path(self, node_id: str) -> Path:
        return self.root / f"{node_id}.json"

    def _read(self, node_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(node_id).read_text())
        except FileNotFoundError:
            return None

    def _write(self, node_id: str, node: dict[str, Any]) -> None:
        tmp = self._path(node_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(node))
        os.replace(tmp, self._path(node_id))

    def _info(self, node_id: str, node: dict[str, Any]) -> NodeInfo:
        return NodeInfo(
            provider_resource_id=node_id,
            state=node["state"],
            reason=node.get("reason"),
            access={"ipv4": node["ipv4"], "ssh_user": node.get("ssh_user"), "ssh_port": 22},
            provider_data={"creations": node["creations"]},
        )

    def _await_placement(self, spec: NodeSpec) -> None:
        after = float(spec.config.get("placement_after_s", 0))
        if not after:
            return
        first = self.root / f"{spec.resource_id}.first-attempt"
        if not first.exists():
            first.write_text(str(time.time()))
        waited = time.time() - float(first.read_text())
        if waited < after:
            raise AwaitingPlacement(f"no place for the node yet ({waited:.0f} of {after:g} s)")

    def _attempt_transient(self, spec: NodeSpec) -> None:
        budget = int(spec.config.get("transient_failures", 0))
        counter = self.root / f"{spec.resource_id}.attempts"
        seen = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(seen + 1))
        if seen < budget:
            raise TransientProviderError(f"simulated transient failure {seen + 1} of {budget}")

    async def create(self, spec: NodeSpec, progress: Progress) -> NodeInfo:
        node_id = f"td-{spec.resource_id.rsplit('_', 1)[-1]}"
        node = self._read(node_id)
        if node is None:
            self._await_placement(spec)
            self._attempt_transient(spec)
            if spec.config.get("fail"):
                raise ProviderError(str(spec.config["fail"]))
            node = {
                "resource_id": spec.resource_id,
                "name": spec.name,
                "state": "provisioning",
                "creations": 1,
                "ipv4": f"198.51.100.{len(list(self.root.glob('*.json'))) % 250 + 1}",
                "ssh_user": spec.image_default_username,
                "unreachable_on_delete": bool(spec.config.get("unreachable_on_delete")),
            } | _provisioned(spec)
            self._write(node_id, node)
        await progress(30, "node created")
        delay = float(spec.config.get("delay_s", 0))
        steps = 5
        for step in range(steps):
            await asyncio.sleep(delay / steps)
            await progress(30 + (step + 1) * 60 // steps, "booting")
        node["state"] = "running"
        self._write(node_id, node)
        with self.console(node_id).open("a") as console:
            console.write(f"{spec.name} booted\n")
        return self._info(node_id, node)

    def console(self, node_id: str) -> Path:
        """The node's console log: lines the double writes (tests append more)."""
        return self.root / f"{node_id}.console"

    async def logs(self, provider_resource_id: str, tail_lines: int = 200) -> str:
        try:
            lines = self.console(provider_resource_id).read_text().splitlines(keepends=True)
        except FileNotFoundError:
            return ""
        return "".join(lines[-tail_lines:])

    async def delete(self, provider_resource_id: str, progress: Progress) -> None:
        if (self._read(provider_resource_id) or {}).get("unreachable_on_delete"):
            raise TransientProviderError(f"test-double node {provider_resource_id}: provider unreachable")
        self._path(provider_resource_id).unlink(missing_ok=True)
        await progress(100, "deleted")

    async def status(self, provider_resource_id: str) -> NodeInfo:
        node = self._read(provider_resource_id)
        if node is None:
            return NodeInfo(provider_resource_id=provider_resource_id, state="gone")
        return self._info(provider_resource_id, node)

    async def reset(self, provider_resource_id: str, spec: NodeSpec, progress: Progress) -> NodeInfo:
        node = self._read(provider_resource_id)
        if node is None:
            raise ProviderError(f"node {provider_resource_id} no longer exists")
        node["resets"] = node.get("resets", 0) + 1
        node["state"] = "running"
        self._write(provider_resource_id, node | _provisioned(spec))
        await progress(100, "reset")
        return self._info(provider_resource_id, node)

    async def pause(self, provider_resource_id: str) -> NodeInfo:
        return self._set_state(provider_resource_id, "paused")

    async def resume(self, provider_resource_id: str) -> NodeInfo:
        return self._set_state(provider_resource_id, "running")

    async def stop(self, provider_resource_id: str) -> NodeInfo:
        return self._set_state(provider_resource_id, "stopped")

    async def start(self, provider_resource_id: str) -> NodeInfo:
        return self._set_state(provider_resource_id, "running")

    def _set_state(self, node_id: str, state: str) -> NodeInfo:
        node = self._read(node_id)
        if node is None:
            raise ProviderError(f"node {node_id} no longer exists")
        node["state"] = state
        self._write(node_id, node)
        return self._info(node_id, node)

    async def catalog(self) -> Catalog:
        return Catalog(
            flavors=[CatalogFlavor("td.small", "td.small", 1, 512, 1024)],
            images=[CatalogImage("td-debian-12", "Debian 12 (test double)", "debian")],
        )

    async def list_managed(self) -> list[ManagedNode]:
        nodes = []
        for path in self.root.glob("*.json"):
            node = self._read(path.stem)
            if node is not None:  # not deleted meanwhile
                nodes.append(ManagedNode(path.stem, node.get("resource_id"), node["state"]))
        return nodes


def _provisioned(spec: NodeSpec) -> dict[str, Any]:
    return {"files": [asdict(f) for f in spec.files], "guest_services": [asdict(s) for s in spec.guest_services]}


DRIVER = TestDoubleDriver
