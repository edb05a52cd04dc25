"""MicroVM provider (flavor type ``microvm``): places VMs on registered hosts and drives their
agents (``slices-blueprint agent``) over HTTPS with each host's own token, trusting only the
certificate pinned when the host enrolled (``hosts/pinning.py``).

It is an adapter: it speaks :mod:`slices_blueprint.agent.protocol` (the agent's own models)
and keeps placements in the calling process's database (handed in, never opened here).
``provider_resource_id`` is :func:`~slices_blueprint.agent.protocol.vm_ref`; the VM id on the agent is our resource
TypeID, so ``create`` is idempotent: a VM with that id on the host its placement (booking)
names is adopted; no other host is asked, whatever it would answer. Agent
failures become :class:`TransientProviderError` (unreachable, timeouts, 5xx) or
:class:`ProviderError` (refusals, a full data directory (507), a guest that failed to boot),
each naming the host.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import structlog

from slices_blueprint.agent.protocol import (
    GuestFile,
    GuestService,
    VMSpec,
    VMView,
    split_vm_ref,
    vm_ref,
)
from slices_blueprint.core.config import Settings
from slices_blueprint.hosts import service as hosts
from slices_blueprint.hosts.models import Host
from slices_blueprint.hosts.pinning import is_pin_mismatch, pinned_context
from slices_blueprint.providers.base import (
    AwaitingPlacement,
    Catalog,
    CatalogFlavor,
    CatalogImage,
    ComputeDriver,
    ManagedNode,
    NodeInfo,
    NodeSpec,
    NodeState,
    Progress,
    ProviderError,
    SessionSource,
    TransientProviderError,
)

log = structlog.get_logger(__name__)

BOOT_TIMEOUT_S = 180
FIND_TIMEOUT_S = 5  # looking for an earlier attempt's VM must not wait on a dead host
MIN_DISK_MIB = 64  # the smallest disk a VM gets (the default image fits in it)
AGENT_STATES: dict[str, NodeState] = {
    "creating": "provisioning", "running": "running", "paused": "paused",
    "stopped": "stopped", "error": "error",
}


class GuestNotReady(ProviderError):
    """The VM runs but its guest did not report ready in time (a broken image, or overload)."""


class AgentClient:
    """Calls to one host's agent over TLS pinned to its certificate; errors name the host."""

    def __init__(self, host: Host, token: str, cert_pem: str) -> None:
        self.host = host
        self.client = httpx.AsyncClient(
            base_url=host.url, headers={"Authorization": f"Bearer {token}"},
            verify=pinned_context(cert_pem), timeout=httpx.Timeout(30.0, read=BOOT_TIMEOUT_S + 30),
        )

    @classmethod
    def of(cls, settings: Settings, host: Host) -> AgentClient:
        """A client for ``host``; :class:`ProviderError` when the service cannot call it."""
        try:
            return cls(host, *hosts.agent_credentials(settings, host))
        except hosts.HostUnusable as exc:
            raise ProviderError(str(exc)) from exc

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"microVM host {self.host.name} ({self.host.url})"
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            if is_pin_mismatch(exc):
                log.error("microvm.agent_certificate_mismatch", host=self.host.name,
                          url=self.host.url, pinned_sha256=self.host.cert_sha256)
                raise ProviderError(
                    f"{where} presented a TLS certificate other than the one pinned when it "
                    f"enrolled (sha256 {self.host.cert_sha256}); refused") from exc
            raise TransientProviderError(f"{where} unreachable: {exc!r}") from exc
        if response.status_code == 404:
            return response
        if response.status_code == 504:
            raise GuestNotReady(f"{where}: {_detail(response)}")
        if response.status_code == 401:
            raise ProviderError(f"{where} rejected the service's token; the agent must register again")
        if response.status_code == 507:  # its disk is full: an operator must make room
            raise ProviderError(f"{where} refused: {_detail(response)}")
        if response.status_code >= 500:
            raise TransientProviderError(f"{where} failed: {_detail(response)}")
        if response.status_code >= 400:
            raise ProviderError(f"{where} refused: {_detail(response)}")
        return response

    async def close(self) -> None:
        await self.client.aclose()


def _disk_mib(spec: NodeSpec) -> int:
    """The VM's disk: the flavor's, at least :data:`MIN_DISK_MIB`."""
    return max(spec.disk_mb, MIN_DISK_MIB)


def _waiting_for(exc: hosts.NoCapacity) -> str:
    """Why a create waits with no live host: the hosts expected, each registered one with its
    last heartbeat (a host that was live and is lost now says it, and since when)."""
    def named(name: str) -> str:
        if name not in exc.silent:
            return name
        status, at = exc.silent[name]
        return f"{name} ({'lost: ' if status == hosts.LOST else ''}{hosts.last_heard(at)})"

    heard = any(at for _, at in exc.silent.values())
    return (f"no microVM host is live {'now' if heard else 'yet'}; waiting for "
            f"{', '.join(map(named, exc.expected))} (registered or enrolled) to send a heartbeat")


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text or str(response.status_code)


def _vm(response: httpx.Response) -> VMView:
    return VMView.model_validate(response.json())


def _info(host: Host, vm: VMView) -> NodeInfo:
    state = AGENT_STATES.get(vm.state, "error")
    if state == "running" and not vm.guest_ready:
        state = "provisioning"
    return NodeInfo(
        provider_resource_id=vm_ref(host.id, vm.id),
        state=state,
        reason=vm.reason,
        access={"ipv4": vm.ipv4.split("/")[0], "ssh_host": vm.ssh.host,
                "ssh_port": vm.ssh.port, "ssh_user": vm.ssh.user},
        provider_data={"host": host.name, "vm_id": vm.id, "network_mode": vm.network_mode},
    )


class MicroVMDriver(ComputeDriver):
    flavor_type = "microvm"
    reports_metrics = True
    forwards_guest_services = True  # guests are confined: the agent forwards each service alone

    def __init__(self, settings: Settings, db: SessionSource | None) -> None:
        """``db``: the calling process's database (placements, host rows), never a pool of
        the driver's own; None serves :meth:`catalog` only."""
        self.settings = settings
        self._db = db

    @classmethod
    def site_configured(cls, settings: Settings) -> bool:
        """MicroVM hosts always belong to the site."""
        return True

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: bytes | None, selected: str | None,
        *, db: SessionSource | None = None,
    ) -> MicroVMDriver:
        return cls(settings, db)

    @property
    def db(self) -> SessionSource:
        if self._db is None:
            raise ProviderError("the microVM driver was built without the service's database")
        return self._db

    # hosts ---------------------------------------------------------------------------------
    async def _client(self, host_id: uuid.UUID) -> AgentClient | None:
        async with self.db.session() as session:
            host = await session.get(Host, host_id)
            if host is None:
                return None
            return AgentClient.of(self.settings, host)

    async def _clients(self) -> list[AgentClient]:
        """A client per registered host the service can call (others are logged)."""
        async with self.db.session() as session:
            rows = await hosts.list_hosts(session)
        clients = []
        for host in rows:
            try:
                clients.append(AgentClient.of(self.settings, host))
            except ProviderError as exc:
                log.warning("microvm.host_unusable", host=host.name, error=str(exc))
        return clients

    def _split(self, provider_resource_id: str) -> tuple[uuid.UUID, str]:
        try:
            return split_vm_ref(provider_resource_id)
        except ValueError as exc:
            raise ProviderError(f"not a microVM id: {provider_resource_id!r}") from exc

    async def _find(self, vm_id: str) -> tuple[AgentClient, VMView] | None:
        """The VM of an earlier attempt of this create (retried after a crash or a transient
        failure), asked of the host its placement (booking) names, and of no other: a host
        answering for a VM it was never given must not receive the create (the user's keys
        and user-data). While that host does not answer and is not lost, the create waits
        (:class:`AwaitingPlacement`): placed elsewhere, the VM could end up made twice.
        A lost host is left; its VM, should it come back, is an orphan the reconciler removes."""
        async with self.db.session() as session:
            host = await hosts.placed_on(session, vm_id)
        if host is None or host.status == hosts.LOST:
            return None
        try:
            agent = AgentClient.of(self.settings, host)
        except ProviderError:
            return None
        try:
            answer = await agent.call("GET", f"/v1/vms/{vm_id}", timeout=FIND_TIMEOUT_S)
        except TransientProviderError as exc:
            await agent.close()
            raise AwaitingPlacement(
                f"waiting for microVM host {host.name}, where an earlier attempt of this create "
                f"was placed, to answer again or be marked lost: {exc}") from exc
        except ProviderError:
            answer = None
        if answer is not None and answer.status_code == 200:
            return agent, _vm(answer)
        await agent.close()
        return None

    async def _place(self, spec: NodeSpec) -> AgentClient:
        async with self.db.session() as session:
            try:
                host = await hosts.place(session, self.settings, spec.resource_id, spec.vcpus,
                                         spec.ram_mib, disk_mib=_disk_mib(spec))
            except hosts.NoCapacity as exc:
                if exc.disk_full:  # an operator must make room, as when an agent answers 507
                    raise ProviderError(str(exc)) from exc
                if not exc.usable and exc.expected:
                    raise AwaitingPlacement(_waiting_for(exc)) from exc
                if not exc.hosts_known:
                    raise ProviderError(
                        "no microVM host is registered at this site (run `slices-blueprint agent run` on a host)"
                    ) from exc
                raise TransientProviderError(str(exc)) from exc
            return AgentClient.of(self.settings, host)

    # verbs ---------------------------------------------------------------------------------
    async def create(self, spec: NodeSpec, progress: Progress) -> NodeInfo:
        found = await self._find(spec.resource_id)
        agent = found[0] if found else await self._place(spec)
        try:
            if found and found[1].state == "error":  # that attempt broke off: start anew
                await agent.call("DELETE", f"/v1/vms/{spec.resource_id}")
            await progress(10, f"placed on host {agent.host.name}")
            body = VMSpec.model_construct(
                id=spec.resource_id, name=spec.name, vcpus=spec.vcpus,
                memory_mib=spec.ram_mib, disk_mib=_disk_mib(spec),
                image=spec.image_location, ssh_authorized_keys=spec.ssh_authorized_keys,
                userdata=spec.userdata,
                labels={"experiment": spec.experiment_id, "project": spec.project_id},
                files=[GuestFile(path=f.path, content=f.content, mode=f.mode) for f in spec.files],
                services=[GuestService(hostname=s.hostname, port=s.port, target_host=s.target_host,
                                       target_port=s.target_port) for s in spec.guest_services],
            )
            vm = _vm(await agent.call("POST", "/v1/vms", json=body.model_dump(mode="json")))
            if vm.state != "error":
                await progress(40, "booting")
                vm = await self._wait_ready(agent, spec.resource_id)
            if vm.state == "error":
                await agent.call("DELETE", f"/v1/vms/{spec.resource_id}")
                raise ProviderError(f"microVM failed on host {agent.host.name}: {vm.reason}")
            await progress(100, "guest ready")
            log.info("microvm.created", resource_id=spec.resource_id, host=agent.host.name)
            return _info(agent.host, vm)
        except TransientProviderError:
            raise  # the booking stays: the retry asks this host first (see _find)
        except ProviderError:
            await self._release(spec.resource_id)
            raise
        finally:
            await agent.close()

    async def _release(self, vm_id: str) -> None:
        async with self.db.session() as session:
            await hosts.release(session, vm_id)

    async def _wait_ready(self, agent: AgentClient, vm_id: str,
                          remove_on_failure: bool = True) -> VMView:
        """The VM once its guest is ready; a new guest that never gets there is removed."""
        try:
            response = await agent.call("GET", f"/v1/vms/{vm_id}",
                                        params={"wait_ready": BOOT_TIMEOUT_S})
        except GuestNotReady as exc:
            console = await agent.call("GET", f"/v1/vms/{vm_id}/console", params={"tail": 5})
            if remove_on_failure:
                await agent.call("DELETE", f"/v1/vms/{vm_id}")
            outcome = "the VM was removed" if remove_on_failure else "the VM keeps running"
            raise ProviderError(
                f"{exc}; {outcome}. Last console lines:\n{console.text}"
            ) from exc
        return _vm(response)

    async def _on_host(self, provider_resource_id: str, method: str, suffix: str = "",
                       **kwargs: Any) -> tuple[Host, httpx.Response] | None:
        host_id, vm_id = self._split(provider_resource_id)
        agent = await self._client(host_id)
        if agent is None:
            return None
        try:
            return agent.host, await agent.call(method, f"/v1/vms/{vm_id}{suffix}", **kwargs)
        finally:
            await agent.close()

    async def delete(self, provider_resource_id: str, progress: Progress) -> None:
        await self._on_host(provider_resource_id, "DELETE")
        await self._release(self._split(provider_resource_id)[1])
        await progress(100, "deleted")

    async def status(self, provider_resource_id: str) -> NodeInfo:
        """The VM's state from its agent; on a lost host an error naming the host (the
        reconciler shows it on the resource, and puts it back when the host returns)."""
        host_id, vm_id = self._split(provider_resource_id)
        gone = NodeInfo(provider_resource_id=provider_resource_id, state="gone")
        agent = await self._client(host_id)
        if agent is None:
            return gone
        host = agent.host
        try:
            if host.status == hosts.LOST:  # the agent is not asked: it would not answer
                return NodeInfo(provider_resource_id=provider_resource_id, state="error",
                                reason=f"microVM host {host.name} is lost: "
                                       f"{hosts.last_heard(host.last_heartbeat_at)}")
            response = await agent.call("GET", f"/v1/vms/{vm_id}")
        finally:
            await agent.close()
        return gone if response.status_code == 404 else _info(host, _vm(response))

    async def _action(self, provider_resource_id: str, action: str) -> NodeInfo:
        answer = await self._on_host(provider_resource_id, "POST", f"/{action}")
        if answer is None or answer[1].status_code == 404:
            raise ProviderError(f"microVM {provider_resource_id} no longer exists")
        return _info(answer[0], _vm(answer[1]))

    async def pause(self, provider_resource_id: str) -> NodeInfo:
        return await self._action(provider_resource_id, "pause")

    async def resume(self, provider_resource_id: str) -> NodeInfo:
        return await self._action(provider_resource_id, "resume")

    async def stop(self, provider_resource_id: str) -> NodeInfo:
        return await self._action(provider_resource_id, "stop")

    async def start(self, provider_resource_id: str) -> NodeInfo:
        """Boot the VM from its kept disk and wait until the guest is ready again."""
        await self._action(provider_resource_id, "start")
        host_id, vm_id = self._split(provider_resource_id)
        agent = await self._client(host_id)
        if agent is None:
            raise ProviderError(f"microVM {provider_resource_id} no longer exists")
        try:
            return _info(agent.host, await self._wait_ready(agent, vm_id, remove_on_failure=False))
        finally:
            await agent.close()

    async def reset(self, provider_resource_id: str, spec: NodeSpec, progress: Progress) -> NodeInfo:
        """Recreate from the image (a fresh disk), on whichever host placement picks."""
        await self.delete(provider_resource_id, progress)
        return await self.create(spec, progress)

    async def logs(self, provider_resource_id: str, tail_lines: int = 200) -> str:
        answer = await self._on_host(provider_resource_id, "GET", "/console",
                                     params={"tail": tail_lines})
        if answer is None or answer[1].status_code == 404:
            raise ProviderError(f"microVM {provider_resource_id} no longer exists")
        return answer[1].text

    async def catalog(self) -> Catalog:
        return Catalog(
            flavors=[
                CatalogFlavor("mv.small", "mv.small", 1, 256, 512, "1 vCPU, 256 MiB microVM"),
                CatalogFlavor("mv.medium", "mv.medium", 2, 1024, 2048, "2 vCPU, 1 GiB microVM"),
            ],
            images=[CatalogImage(
                "default", "microvm-default",
                default_username="root", min_disk_mb=MIN_DISK_MIB, min_ram_mib=128,
                description="Debian cloud kernel, busybox and dropbear; built on each host from Debian packages",
            )],
        )

    async def list_managed(self) -> list[ManagedNode]:
        nodes: list[ManagedNode] = []
        for agent in await self._clients():
            try:
                response = await agent.call("GET", "/v1/vms")
            except ProviderError as exc:
                log.warning("microvm.list_failed", host=agent.host.name, error=str(exc))
                continue
            finally:
                await agent.close()
            for vm in map(VMView.model_validate, response.json()):
                resource_id = vm.id if vm.id.startswith("resource_") else None
                nodes.append(ManagedNode(vm_ref(agent.host.id, vm.id), resource_id,
                                         AGENT_STATES.get(vm.state, "error")))
        return nodes


DRIVER = MicroVMDriver
