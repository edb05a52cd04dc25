"""The compute driver interface every provider implements the same way.

A driver is built for one call site (a task) with the credential it needs, and answers in
plain dataclasses, so the task layer never branches on the provider type. Modelled on Apache
Libcloud's ``NodeDriver``: create, delete, status, reset, catalog, plus the listing the
reconciler needs to find orphans.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from slices_blueprint.core.config import Settings
    from slices_blueprint.providers.endpoints import EndpointPolicy

NodeState = Literal["provisioning", "running", "paused", "stopped", "error", "gone"]

Progress = Callable[[int, str], Awaitable[None]]
"""``await progress(percent, message)``: report how far an operation has come (0-100)."""


class ProviderError(Exception):
    """The provider refused or failed; the message is shown to the user as the reason."""


class TransientProviderError(ProviderError):
    """A failure worth retrying with backoff (timeouts, 5xx, connection resets)."""


CONNECT_REASONS = {
    "Connection refused": "connection refused",
    "Name or service not known": "host name not found",
    "No route to host": "host unreachable",
    "Network is unreachable": "network unreachable",
    "timed out": "timed out",
}


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words (an HTTP client's message is long)."""
    text = str(exc)
    return next((why for key, why in CONNECT_REASONS.items() if key in text), "connection failed")


class AwaitingPlacement(TransientProviderError):
    """Nothing can take the node now, but a place is expected soon (a host starting): the
    operation is tried again every few seconds for up to ``placement_wait_seconds`` from its
    start, however many attempts that takes; then this message is the resource's reason."""


class NotSupported(ProviderError):
    """The provider has no such operation (e.g. pause on a pod)."""


@dataclass(frozen=True)
class GuestFile:
    """A file to place in the machine when it is created: an absolute ``path``, its text and
    its permission bits. Providers deliver them as they can (cloud-init ``write_files``, a
    mounted Secret); the content may be secret and is never logged."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class GuestService:
    """A service on the operator's side the machine may reach by name: inside the machine,
    ``hostname:port`` leads to ``target_host:target_port``. Only providers that set
    :attr:`ComputeDriver.forwards_guest_services` make such a path (the others' machines
    reach ``target_host:target_port`` directly, where the operator's network lets them)."""

    hostname: str
    port: int
    target_host: str
    target_port: int


@dataclass(frozen=True)
class NodeSpec:
    """What to create: everything a driver needs, resolved from the database rows."""

    resource_id: str  # our TypeID; drivers tag provider objects with it
    name: str
    experiment_id: str
    project_id: str
    image_location: str
    image_default_username: str | None
    flavor_ref: str | None  # the provider's flavor id, if the flavor came from a sync
    vcpus: int
    ram_mib: int
    disk_mb: int
    ssh_authorized_keys: list[str] = field(default_factory=list)
    userdata: str | None = None
    network_interfaces: list[str] = field(default_factory=list)
    public_ipv4: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # provider-specific request_config
    files: tuple[GuestFile, ...] = ()  # placed in the machine on create and reset
    guest_services: tuple[GuestService, ...] = ()  # reachable from it by name (see GuestService)


@dataclass
class NodeInfo:
    """What a driver knows of one node."""

    provider_resource_id: str
    state: NodeState
    reason: str | None = None
    access: dict[str, Any] = field(default_factory=dict)  # ipv4, ssh_host, ssh_port, ssh_user
    provider_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogFlavor:
    provider_ref: str
    name: str
    vcpus: int
    ram_mib: int
    disk_mb: int
    description: str = ""


@dataclass(frozen=True)
class CatalogImage:
    location: str
    name: str
    default_username: str | None = None
    min_disk_mb: int = 0
    min_ram_mib: int = 0
    description: str = ""


@dataclass
class Catalog:
    flavors: list[CatalogFlavor] = field(default_factory=list)
    images: list[CatalogImage] = field(default_factory=list)


@dataclass(frozen=True)
class ManagedNode:
    """A provider object carrying our tag: the reconciler compares these with live rows."""

    provider_resource_id: str
    resource_id: str | None  # our TypeID from the tag, if readable
    state: NodeState


class SessionSource(Protocol):
    """The calling process's database, for a driver that keeps state there: a
    :class:`~slices_blueprint.core.database.Database`, or the caller's engine
    (``credentials.drivers``). Each ``session()`` is its own transaction."""

    def session(self) -> AbstractAsyncContextManager[AsyncSession]: ...


OPTIONAL_VERBS = ("pause", "resume", "stop", "start", "logs")
"""The verbs a provider may lack (the base class raises :class:`NotSupported` for them)."""


class ComputeDriver(abc.ABC):
    """One provider. Every method is idempotent where its meaning allows.

    The class attributes (and :meth:`site_configured`, :meth:`actions`) are the provider's
    facts: the API, the UI, the catalog and the credentials domain read them through
    :mod:`slices_blueprint.providers.registry`.
    """

    flavor_type: ClassVar[str]
    credential_kind: ClassVar[str | None] = None  # which uploaded credential it needs
    credential_label: ClassVar[str] = ""  # that credential for people: "OpenStack clouds.yaml"
    credential_entry: ClassVar[str] = ""  # what picks one entry of it: "Cloud entry", "Context"
    site_noun: ClassVar[str] = ""  # what the site-wide configuration provides: "cloud", "cluster"
    site_setting: ClassVar[str | None] = None  # the Settings field holding the site-wide config
    takes_account_ssh_keys: ClassVar[bool] = True
    """Whether the user's SLICES account key (from the id-token) is added to every node's
    keys; a provider that refuses unasked-for keys (pods) sets this False."""
    chooses_networks: ClassVar[bool] = False
    """Whether a request may name its networks and ask for a public IPv4 (the create form
    offers those fields only for such a provider)."""
    reports_metrics: ClassVar[bool] = False
    """Whether its nodes' metrics reach the service (microVM agents push them)."""
    forwards_guest_services: ClassVar[bool] = False
    """Whether it makes the path of each :class:`GuestService` into its machines (microVMs,
    whose guests are confined); otherwise they reach the target at its own address."""

    @classmethod
    def site_configured(cls, settings: Settings) -> bool:
        """Whether the operator configured a site-wide provider (no uploaded credential
        needed): its :attr:`site_setting` is set."""
        return cls.site_setting is not None and getattr(settings, cls.site_setting) is not None

    @classmethod
    def actions(cls) -> list[str]:
        """The optional verbs (:data:`OPTIONAL_VERBS`) this provider implements."""
        return [verb for verb in OPTIONAL_VERBS
                if getattr(cls, verb) is not getattr(ComputeDriver, verb)]

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: bytes | None, selected: str | None,
        *, db: SessionSource | None = None,
    ) -> ComputeDriver:
        """Build the driver from settings and the caller's decrypted credential (if any).

        ``selected`` names the cloud entry / kube context chosen at upload. A driver built
        from an uploaded credential calls only the endpoints ``uploaded_endpoints_allowed``
        and public addresses allow (see :mod:`slices_blueprint.providers.endpoints`).
        ``db`` is the calling process's database (the worker's, the web app's); a driver
        that keeps its state there (microVM placements) uses it and never opens its own.
        """
        return cls()

    @classmethod
    async def validate_credential(
        cls, plaintext: bytes, selected: str | None, policy: EndpointPolicy
    ) -> str | None:
        """Check an uploaded credential works (parse, authenticate, read the catalog), calling
        only endpoints ``policy`` allows.

        Raise :class:`ProviderError` with a message a person understands when it does not;
        return the entry actually selected (e.g. the only cloud in a clouds.yaml).
        """
        raise NotSupported(f"{cls.flavor_type} takes no uploaded credential")

    @classmethod
    def check_request_config(cls, config: dict[str, Any]) -> None:
        """Refuse a ``request_config`` the provider will not accept, when the resource is
        requested (raise :class:`ProviderError` with the reason); the default accepts any."""

    @abc.abstractmethod
    async def create(self, spec: NodeSpec, progress: Progress) -> NodeInfo:
        """Create the node and wait until it runs (or fails); report progress.

        Idempotent by ``spec.resource_id``: when a node tagged with it exists already (a
        worker died after creating it), adopt that node instead of creating a second one.
        """

    @abc.abstractmethod
    async def delete(self, provider_resource_id: str, progress: Progress) -> None:
        """Delete the node; an already-gone node is success."""

    @abc.abstractmethod
    async def status(self, provider_resource_id: str) -> NodeInfo:
        """The node's state as the provider sees it (``gone`` when it no longer exists)."""

    @abc.abstractmethod
    async def reset(self, provider_resource_id: str, spec: NodeSpec, progress: Progress) -> NodeInfo:
        """Return the node to its initial state (rebuild/recreate from the image)."""

    @abc.abstractmethod
    async def catalog(self) -> Catalog:
        """The images and flavors the provider offers."""

    async def list_managed(self) -> list[ManagedNode]:
        """Every provider object tagged as ours (for orphan detection)."""
        return []

    async def pause(self, provider_resource_id: str) -> NodeInfo:
        raise NotSupported(f"{self.flavor_type} resources cannot be paused")

    async def resume(self, provider_resource_id: str) -> NodeInfo:
        raise NotSupported(f"{self.flavor_type} resources cannot be resumed")

    async def stop(self, provider_resource_id: str) -> NodeInfo:
        """Power the node off, keeping its disk; :meth:`start` boots it again."""
        raise NotSupported(f"{self.flavor_type} resources cannot be stopped")

    async def start(self, provider_resource_id: str) -> NodeInfo:
        """Boot a stopped node and wait until it runs."""
        raise NotSupported(f"{self.flavor_type} resources cannot be started")

    async def logs(self, provider_resource_id: str, tail_lines: int = 200) -> str:
        raise NotSupported(f"{self.flavor_type} resources have no logs to show")

    async def close(self) -> None:
        """Release clients and connections."""
