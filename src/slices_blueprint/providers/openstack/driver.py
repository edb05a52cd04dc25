"""OpenStack provider (flavor type ``vm``): nova servers through openstacksdk.

Credentials
    The user's uploaded ``clouds.yaml`` (or the operator's site-wide one) is parsed in memory
    with ``yaml.safe_load``; the chosen cloud's dict goes straight to openstacksdk's config
    loader (``load_yaml_config=False``, ``load_envvars=False``), so no plaintext credential
    ever reaches the disk and no ``OS_*`` variable or local ``clouds.yaml`` leaks in. An
    uploaded cloud may not use ``profile``/``cloud`` (vendor profiles, fetched from a URL
    outside the guarded session), ``vendor_hook`` (code to import) or ``cacert``/``cert``/``key``
    (server-side files); its session connects directly, without the environment's proxy.

SSH keys
    No nova keypair: nova takes one keypair per server and keypairs belong to a user, not a
    project. The experimenter's keys reach the guest through cloud-init instead: the user
    data becomes a MIME multipart holding the experimenter's own user data (a ``text/plain``
    part, whose type cloud-init detects from its first line; a multipart is spliced in) and
    a ``#cloud-config`` part with ``ssh_authorized_keys`` merged with ``list(append)``, so
    keys the experimenter lists themselves are kept.

Tagging
    Every server carries the metadata ``slices_resource_id``, ``slices_experiment_id``,
    ``slices_project_id`` (and ``slices_ssh_user``), plus the tag ``slices-blueprint`` when
    the compute API offers microversion 2.52. ``create`` adopts a server already carrying
    its resource id; ``list_managed`` returns every server carrying one. Floating IPs carry
    the resource id in their description.

Networks
    ``network_interfaces`` names neutron networks (or ids), one NIC each. With none named,
    the project's only usable network is taken (its own or a shared one, external ones
    excluded); with no network at all the server boots without NIC (``networks="none"``);
    with several, the user must choose. ``public_ipv4`` allocates a floating IP from the
    cloud's only external network (or the one named by the ``floating_network`` provider
    option) onto the server's first port.

Connections
    Drivers are built per task; the openstacksdk connection behind them is shared by every
    driver built from the same cloud settings (kept in memory, never on disk), so a task
    does not pay for signing in and endpoint discovery again. Credential checks use a
    connection of their own.

Failures
    Refusals (unknown image/flavor/network, quota, bad request, ERROR state, boot timeout)
    raise :class:`ProviderError`; a server created by a failed ``create`` is deleted first
    so nothing runs untracked. Connection errors, timeouts of API calls, HTTP 429 and 5xx
    raise :class:`TransientProviderError` and leave the tagged server for the retry to adopt
    (the reconciler finds it should every retry fail). A server nova set to ERROR without a
    fault (its compute service stopped while building it) is deleted and the retry boots a
    new one (:class:`BuildLost`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import openstack.exceptions as os_exc
import structlog
from openstack import utils as os_utils
from openstack.compute.v2.server import Server
from openstack.connection import Connection

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import (
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
from slices_blueprint.providers.endpoints import EndpointPolicy
from slices_blueprint.providers.openstack.connection import (
    SharedConnection,
    connect,
    parse_clouds_yaml,
    read_site_file,
    shared_connection,
)
from slices_blueprint.providers.openstack.errors import translate_error
from slices_blueprint.providers.openstack.userdata import build_userdata

log = structlog.get_logger(__name__)

T = TypeVar("T")

MANAGED_TAG = "slices-blueprint"
META_RESOURCE = "slices_resource_id"
META_EXPERIMENT = "slices_experiment_id"
META_PROJECT = "slices_project_id"
META_SSH_USER = "slices_ssh_user"
TAGS_MICROVERSION = "2.52"
MAX_POLL_S = 1.0  # longest pause between two looks at a server
DISCARD_SETTLE_S = 5.0  # how long a failed server must stay gone (see _wait_gone)

NOVA_STATES: dict[str, NodeState] = {
    "BUILD": "provisioning",
    "REBUILD": "provisioning",
    "ACTIVE": "running",
    "PAUSED": "paused",
    "SUSPENDED": "paused",
    "SHUTOFF": "stopped",
    "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped",
    "ERROR": "error",
    "UNKNOWN": "error",
    "DELETED": "gone",
    "SOFT_DELETED": "gone",
}
"""Nova server status -> our state; anything else (REBOOT, RESIZE, MIGRATING...) is running."""


class BuildLost(TransientProviderError):
    """Nova set the server to ERROR without a fault: what its compute service does to the
    servers it was building when it stopped. Not the request's fault: ``create`` deletes the
    server and the retry boots a new one."""


class OpenStackDriver(ComputeDriver):
    """Nova servers in one cloud/project, built from one clouds.yaml entry."""

    flavor_type = "vm"
    credential_kind = "openstack"
    credential_label = "OpenStack clouds.yaml"
    credential_entry = "Cloud entry"
    site_noun = "cloud"
    site_setting = "openstack_clouds_yaml"
    chooses_networks = True
    validate_timeout_s: float = 10.0

    def __init__(
        self,
        cloud_name: str,
        cloud: dict[str, Any],
        *,
        api_timeout_s: float = 60.0,
        boot_timeout_s: float = 600.0,
        delete_timeout_s: float = 300.0,
        share_connection: bool = True,
        policy: EndpointPolicy | None = None,
    ) -> None:
        """``policy`` limits the endpoints called (uploaded credentials); None: no limit."""
        self.cloud_name = cloud_name
        self.boot_timeout_s = boot_timeout_s
        self.delete_timeout_s = delete_timeout_s
        self._owns_connection = not share_connection
        self._shared = (
            shared_connection(cloud_name, cloud, api_timeout_s, policy)
            if share_connection
            else SharedConnection(connect(cloud_name, cloud, api_timeout_s, policy))
        )

    @property
    def conn(self) -> Connection:
        return self._shared.conn

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: bytes | None, selected: str | None,
        *, db: SessionSource | None = None,
    ) -> OpenStackDriver:
        if credential is not None:
            return cls(*parse_clouds_yaml(credential, selected), policy=EndpointPolicy.of(settings))
        if settings.openstack_clouds_yaml is None:
            raise ProviderError(
                "no OpenStack cloud: upload your clouds.yaml, or ask the operator for a "
                "site-wide cloud"
            )
        site_yaml = read_site_file(settings.openstack_clouds_yaml)
        return cls(*parse_clouds_yaml(site_yaml, settings.openstack_cloud))

    @classmethod
    async def validate_credential(
        cls, plaintext: bytes, selected: str | None, policy: EndpointPolicy
    ) -> str | None:
        name, cloud = parse_clouds_yaml(plaintext, selected)
        driver = await asyncio.to_thread(
            cls, name, cloud, api_timeout_s=cls.validate_timeout_s, share_connection=False,
            policy=policy)
        where = cloud["auth"].get("auth_url", "the auth_url")
        try:
            await driver._call(f"signing in at {where}", driver.conn.authorize)
            flavors = await driver._call(
                "reading the flavors", _listed(driver.conn.compute.flavors)
            )
        finally:
            await driver.close()
        log.info("openstack.credential_validated", cloud=name, flavors=len(flavors))
        return name

    async def _call(self, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in a thread, translating its failures."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            error = translate_error(exc, doing)
            if error is None:
                raise
            raise error from exc

    # -------------------------------------------------------------- create

    async def create(self, spec: NodeSpec, progress: Progress) -> NodeInfo:
        server = await self._adopt_or_boot(spec, progress)
        try:
            server = await self._wait_status(server.id, progress, 30, self.boot_timeout_s)
            floating = await self._ensure_floating_ip(server.id, spec) if spec.public_ipv4 else []
        except BuildLost:
            await self._discard(server.id, spec.resource_id)
            raise  # transient: the retry boots a new server
        except TransientProviderError:
            raise  # the server stays tagged; the retry adopts it
        except ProviderError:
            await self._discard(server.id, spec.resource_id)
            raise
        await progress(100, "server is ACTIVE")
        return self._info(server, floating)

    async def _adopt_or_boot(self, spec: NodeSpec, progress: Progress) -> Server:
        """The server an earlier attempt made, else a new one (both looked up at once); an
        earlier server in ERROR is deleted first."""
        bound = log.bind(resource_id=spec.resource_id)
        earlier, attrs = await asyncio.gather(
            self._find_server(spec.resource_id), self._server_attrs(spec), return_exceptions=True
        )
        if isinstance(earlier, BaseException):
            raise earlier
        if earlier is not None and earlier.status == "ERROR":
            # it failed, and deleting it then failed too (nova may refuse while it changes)
            bound.info("openstack.failed_server_replaced", server_id=earlier.id)
            await self._delete(earlier.id, settle_s=DISCARD_SETTLE_S)
            earlier = None
        if earlier is not None:  # adopt it even if its image or network is gone since
            bound.info("openstack.server_adopted", server_id=earlier.id, status=earlier.status)
            await progress(30, "adopted the server created by an earlier attempt")
            return earlier
        if isinstance(attrs, BaseException):
            raise attrs
        await progress(10, "image, flavor and networks found")
        server = await self._call("creating the server", self.conn.compute.create_server, **attrs)
        bound.info("openstack.server_created", server_id=server.id)
        await progress(30, "server requested")
        return server

    async def _server_attrs(self, spec: NodeSpec) -> dict[str, Any]:
        """What nova needs to boot ``spec``, its references checked (clear errors if not)."""
        image_id, flavor_id, networks, tags = await asyncio.gather(
            self._call("looking up the image", self._image_id, spec.image_location),
            self._call("looking up the flavor", self._flavor_id, spec),
            self._call("looking up the networks", self._networks, spec.network_interfaces),
            self._call("checking the compute API version", self._supports_tags),
        )
        attrs: dict[str, Any] = {
            "name": spec.name,
            "image_id": image_id,
            "flavor_id": flavor_id,
            "networks": networks,
            "metadata": _metadata(spec),
        }
        userdata = build_userdata(spec.userdata, spec.ssh_authorized_keys, spec.files)
        if userdata is not None:
            attrs["user_data"] = userdata
        if tags:
            attrs["tags"] = [MANAGED_TAG]
        return attrs

    def _image_id(self, ref: str) -> str:
        image = _find(self.conn.image.find_image, ref)
        if image is None:
            raise ProviderError(f"image {ref!r} does not exist on this cloud (or is not visible)")
        if image.status != "active":
            raise ProviderError(f"image {image.name!r} is {image.status}, not active")
        return image.id

    def _flavor_id(self, spec: NodeSpec) -> str:
        if spec.flavor_ref is not None:
            flavor = _find(self.conn.compute.find_flavor, spec.flavor_ref)
            if flavor is None:
                raise ProviderError(f"flavor {spec.flavor_ref!r} does not exist on this cloud")
            return flavor.id
        matches = sorted(
            (
                f
                for f in self.conn.compute.flavors()
                if (f.vcpus, f.ram, f.disk * 1024) == (spec.vcpus, spec.ram_mib, spec.disk_mb)
            ),
            key=lambda f: f.name,
        )
        if not matches:
            raise ProviderError(
                f"no flavor on this cloud has exactly {spec.vcpus} vCPU, {spec.ram_mib} MiB RAM "
                f"and {spec.disk_mb} MB disk"
            )
        return matches[0].id

    def _networks(self, names: list[str]) -> list[dict[str, str]] | str:
        if names:
            return [{"uuid": self._network_id(name)} for name in names]
        usable = self._usable_networks()
        if len(usable) > 1:
            listed = ", ".join(sorted(n.name for n in usable))
            raise ProviderError(f"the project has several networks ({listed}): name one")
        return [{"uuid": usable[0].id}] if usable else "none"

    def _network_id(self, name: str) -> str:
        network = _find(self.conn.network.find_network, name)
        if network is None:
            listed = ", ".join(sorted(n.name for n in self._usable_networks())) or "none"
            raise ProviderError(f"network {name!r} does not exist (usable networks: {listed})")
        return network.id

    def _usable_networks(self) -> list[Any]:
        """The project's own and shared networks, external ones left out."""
        own = self.conn.network.networks(project_id=self.conn.current_project_id)
        shared = self.conn.network.networks(is_shared=True)
        found = {n.id: n for n in [*own, *shared] if not n.is_router_external}
        return list(found.values())

    def _supports_tags(self) -> bool:
        if self._shared.tags_supported is None:
            self._shared.tags_supported = os_utils.supports_microversion(
                self.conn.compute, TAGS_MICROVERSION
            )
        return self._shared.tags_supported

    async def _wait_status(
        self, server_id: str, progress: Progress, start_pct: int, timeout_s: float,
        want: tuple[str, ...] = ("ACTIVE",),
    ) -> Server:
        """Poll until the server's status is one of ``want``, with no task under way,
        reporting each new step; ERROR or timeout -> ProviderError."""
        deadline = time.monotonic() + timeout_s
        delay, pct, step = 0.5, start_pct, None
        while True:
            server = await self._call("reading the server", self.conn.compute.get_server, server_id)
            if server.status in want and server.task_state is None:
                return server
            if server.status == "ERROR":
                raise _failure(server)
            if (server.status, server.task_state) != step:
                step, pct = (server.status, server.task_state), min(pct + 10, 90)
                await progress(pct, _describe(server))
            if time.monotonic() + delay > deadline:
                raise ProviderError(
                    f"the server did not become {' or '.join(want)} within {timeout_s:g} s "
                    f"(still {_describe(server)})"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_S)

    async def _discard(self, server_id: str, resource_id: str) -> None:
        """Delete a server whose creation failed; a failure here is logged, not raised."""
        try:
            await self._delete(server_id, settle_s=DISCARD_SETTLE_S)
            log.info(
                "openstack.failed_server_deleted", resource_id=resource_id, server_id=server_id
            )
        except ProviderError as exc:
            log.error(
                "openstack.cleanup_failed",
                resource_id=resource_id,
                server_id=server_id,
                error=str(exc),
            )

    # -------------------------------------------------------------- floating IPs

    async def _ensure_floating_ip(self, server_id: str, spec: NodeSpec) -> list[str]:
        return await self._call(
            "attaching a floating IP",
            self._attach_floating_ip,
            server_id,
            spec.resource_id,
            spec.config.get("floating_network"),
        )

    def _attach_floating_ip(
        self, server_id: str, resource_id: str, floating_network: str | None
    ) -> list[str]:
        existing = self._floating_ips(server_id)
        if existing:
            return [ip.floating_ip_address for ip in existing]
        ports = list(self.conn.network.ports(device_id=server_id))
        if not ports:
            raise ProviderError("a public IPv4 needs a network: name one in network_interfaces")
        ip = self.conn.network.create_ip(
            floating_network_id=self._external_network_id(floating_network),
            port_id=ports[0].id,
            description=f"{META_RESOURCE}={resource_id}",
        )
        log.info(
            "openstack.floating_ip_attached",
            resource_id=resource_id,
            server_id=server_id,
            floating_ip=ip.floating_ip_address,
        )
        return [ip.floating_ip_address]

    def _external_network_id(self, name: str | None) -> str:
        """The named external network, else the cloud's only one."""
        external = list(self.conn.network.networks(is_router_external=True))
        chosen = [n for n in external if name in (None, n.name, n.id)]
        if len(chosen) != 1:
            listed = ", ".join(sorted(n.name for n in external)) or "none"
            wanted = f"external network {name!r}" if name else "exactly one external network"
            raise ProviderError(
                f"a public IPv4 needs {wanted} on this cloud (external networks: {listed}); "
                "choose one with request_config floating_network"
            )
        return chosen[0].id

    def _floating_ips(self, server_id: str) -> list[Any]:
        return [
            ip
            for port in self.conn.network.ports(device_id=server_id)
            for ip in self.conn.network.ips(port_id=port.id)
        ]

    def _release_floating_ips(self, server_id: str) -> None:
        for ip in self._floating_ips(server_id):
            self.conn.network.delete_ip(ip, ignore_missing=True)
            log.info(
                "openstack.floating_ip_released",
                server_id=server_id,
                floating_ip=ip.floating_ip_address,
            )

    # -------------------------------------------------------------- other verbs

    async def delete(self, provider_resource_id: str, progress: Progress) -> None:
        await self._delete(provider_resource_id, progress)
        log.info("openstack.server_deleted", server_id=provider_resource_id)

    async def _delete(
        self, server_id: str, progress: Progress | None = None, settle_s: float = 0.0
    ) -> None:
        report = progress or _no_progress
        await self._call("releasing floating IPs", self._release_floating_ips, server_id)
        await report(20, "floating IPs released")
        await self._request_delete(server_id)
        await report(40, "deletion requested")
        await self._wait_gone(server_id, settle_s)
        await report(100, "server deleted")

    async def _request_delete(self, server_id: str) -> None:
        await self._call(
            "deleting the server", self.conn.compute.delete_server, server_id, ignore_missing=True
        )

    async def _wait_gone(self, server_id: str, settle_s: float) -> None:
        """Poll until the server is gone and has stayed gone for ``settle_s``.

        A server deleted while nova still schedules it answers 404 at once, then may show up
        again for a moment when the conductor places it; it is deleted again if so.
        """
        deadline = time.monotonic() + self.delete_timeout_s
        delay, gone_at = 0.5, None
        while True:
            server = await self._get(server_id)
            now = time.monotonic()
            if server is None:
                gone_at = gone_at or now
                if now - gone_at >= settle_s:
                    return
            elif gone_at is not None:
                log.warning("openstack.server_reappeared", server_id=server_id)
                gone_at = None
                await self._request_delete(server_id)
            if now + delay > deadline:
                raise TransientProviderError(
                    f"server {server_id} still exists {self.delete_timeout_s:g} s after its "
                    "deletion"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL_S)

    async def _get(self, server_id: str) -> Server | None:
        """The server, or None when it is gone (404, or soft-deleted)."""
        server = await self._call("reading the server", self._get_or_none, server_id)
        return None if server is None or NOVA_STATES.get(server.status) == "gone" else server

    def _get_or_none(self, server_id: str) -> Server | None:
        try:
            return self.conn.compute.get_server(server_id)
        except os_exc.NotFoundException:
            return None

    async def status(self, provider_resource_id: str) -> NodeInfo:
        server = await self._get(provider_resource_id)
        if server is None:
            return NodeInfo(provider_resource_id=provider_resource_id, state="gone")
        floating = await self._call("reading floating IPs", self._floating_ips, server.id)
        return self._info(server, [ip.floating_ip_address for ip in floating])

    async def reset(
        self, provider_resource_id: str, spec: NodeSpec, progress: Progress
    ) -> NodeInfo:
        # the files to place (credentials) go with the rebuild: the server's first user data may predate them
        files = {"user_data": build_userdata(spec.userdata, spec.ssh_authorized_keys, spec.files)} if spec.files else {}
        await self._call(
            "rebuilding the server",
            self.conn.compute.rebuild_server,
            provider_resource_id,
            image=spec.image_location,
            **files,
        )
        log.info(
            "openstack.server_rebuilding",
            resource_id=spec.resource_id,
            server_id=provider_resource_id,
        )
        await progress(20, "rebuild requested")
        # nova keeps a stopped server's power state through a rebuild; a reset ends running
        server = await self._wait_status(provider_resource_id, progress, 20, self.boot_timeout_s,
                                         ("ACTIVE", "SHUTOFF"))
        if server.status == "SHUTOFF":
            await progress(80, "server rebuilt; starting it")
            return await self.start(server.id)
        await progress(100, "server rebuilt")
        return await self.status(server.id)

    async def _power(self, server_id: str, verb: str, call: str, want: str) -> NodeInfo:
        """Ask nova for a power change (``call`` on the compute proxy) and wait for ``want``."""
        await self._call(f"asking nova to {verb} the server", getattr(self.conn.compute, call),
                         server_id)
        log.info(f"openstack.server_{verb}", server_id=server_id)
        server = await self._wait_status(server_id, _no_progress, 0, self.boot_timeout_s, (want,))
        return await self.status(server.id)

    async def pause(self, provider_resource_id: str) -> NodeInfo:
        return await self._power(provider_resource_id, "pause", "pause_server", "PAUSED")

    async def resume(self, provider_resource_id: str) -> NodeInfo:
        return await self._power(provider_resource_id, "resume", "unpause_server", "ACTIVE")

    async def stop(self, provider_resource_id: str) -> NodeInfo:
        return await self._power(provider_resource_id, "stop", "stop_server", "SHUTOFF")

    async def start(self, provider_resource_id: str) -> NodeInfo:
        return await self._power(provider_resource_id, "start", "start_server", "ACTIVE")

    async def catalog(self) -> Catalog:
        flavors = await self._call("reading the flavors", _listed(self.conn.compute.flavors))
        images = await self._call("reading the images", _listed(self.conn.image.images))
        return Catalog(
            flavors=[
                CatalogFlavor(f.id, f.name, f.vcpus, f.ram, f.disk * 1024, f.description or "")
                for f in flavors
            ],
            images=[
                CatalogImage(
                    location=i.id,
                    name=i.name or i.id,
                    default_username=i.os_admin_user,
                    min_disk_mb=(i.min_disk or 0) * 1024,
                    min_ram_mib=i.min_ram or 0,
                    description=str((i.properties or {}).get("description", "")),
                )
                for i in images
                if i.status == "active"
            ],
        )

    async def list_managed(self) -> list[ManagedNode]:
        servers = await self._call("listing servers", self._managed_servers)
        return [
            ManagedNode(s.id, s.metadata[META_RESOURCE], NOVA_STATES.get(s.status, "running"))
            for s in servers
        ]

    async def _find_server(self, resource_id: str) -> Server | None:
        servers = await self._call("looking for an earlier server", self._managed_servers)
        return next((s for s in servers if s.metadata[META_RESOURCE] == resource_id), None)

    def _managed_servers(self) -> list[Server]:
        """The project's servers carrying our resource id (oldest first)."""
        query = {"tags": MANAGED_TAG} if self._supports_tags() else {}
        servers = self.conn.compute.servers(
            details=True, sort_key="created_at", sort_dir="asc", **query
        )
        return [s for s in servers if META_RESOURCE in (s.metadata or {})]

    def _info(self, server: Server, floating: list[str]) -> NodeInfo:
        state = NOVA_STATES.get(server.status, "running")
        return NodeInfo(
            provider_resource_id=server.id,
            state=state,
            reason=_fault(server) if state == "error" else None,
            access=_access(server, floating),
            provider_data={"status": server.status, "task_state": server.task_state},
        )

    async def close(self) -> None:
        if self._owns_connection:
            await asyncio.to_thread(self.conn.close)



async def _no_progress(pct: int, message: str) -> None:
    return None


def _listed(fn: Callable[..., Any]) -> Callable[[], list[Any]]:
    """A blocking call that lists a whole SDK generator (so it runs inside the thread)."""
    return lambda: list(fn())


def _find(finder: Callable[..., T], name_or_id: str) -> T | None:
    """An SDK ``find_*`` call answering None for a missing object."""
    try:
        return finder(name_or_id, ignore_missing=False)
    except os_exc.NotFoundException:
        return None




def _metadata(spec: NodeSpec) -> dict[str, str]:
    meta = {
        META_RESOURCE: spec.resource_id,
        META_EXPERIMENT: spec.experiment_id,
        META_PROJECT: spec.project_id,
    }
    if spec.image_default_username:
        meta[META_SSH_USER] = spec.image_default_username
    return meta


def _failure(server: Server) -> ProviderError:
    """The error for a server in ERROR: its fault, or :class:`BuildLost` when it has none."""
    if (server.fault or {}).get("message"):
        return ProviderError(f"the server failed: {_fault(server)}")
    return BuildLost("nova set the server to ERROR without a fault (its compute service may "
                     "have stopped while building it)")


def _fault(server: Server) -> str:
    fault = server.fault or {}
    return str(fault.get("message") or f"nova reports {server.status} without a fault message")


def _describe(server: Server) -> str:
    step = f" ({server.task_state})" if server.task_state else ""
    return f"{server.status.lower()}{step}"


def _access(server: Server, floating: list[str]) -> dict[str, Any]:
    """How to reach the server: its addresses per network, the best IPv4, the SSH login."""
    addresses = {
        net: [a["addr"] for a in entries] for net, entries in (server.addresses or {}).items()
    }
    fixed_v4 = [
        a["addr"]
        for entries in (server.addresses or {}).values()
        for a in entries
        if a.get("version") == 4 and a["addr"] not in floating
    ]
    ipv4 = (floating or fixed_v4 or [None])[0]
    return {
        "ipv4": ipv4,
        "private_ipv4": (fixed_v4 or [None])[0],
        "addresses": addresses,
        "floating_ip": floating[0] if floating else None,
        "ssh_host": ipv4,
        "ssh_user": (server.metadata or {}).get(META_SSH_USER),
        "ssh_port": 22,
    }


DRIVER = OpenStackDriver
