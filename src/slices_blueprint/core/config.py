"""Settings: one object, read from the environment (prefix ``SLICES_BLUEPRINT_``),
an optional TOML file and a few unprefixed conventions (``DATABASE_URL``)."""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import platformdirs
from cryptography.fernet import Fernet
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    IPvAnyNetwork,
    NonNegativeInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_PORT = 8000
CONFIG_FILE_ENV = "SLICES_BLUEPRINT_CONFIG"


class TrustedIssuer(BaseModel):
    """An OIDC issuer whose tokens we accept.

    ``kind`` says which tokens it signs: ``user`` id-tokens, ``experiment`` JWTs, or both.
    ``jwks_uri`` is discovered from ``{issuer}/.well-known/openid-configuration`` when unset.
    """

    issuer: str
    kind: Literal["user", "experiment", "both"] = "both"
    jwks_uri: str | None = None
    algorithms: list[Literal["ES256", "RS256", "RS512"]] = ["ES256", "RS256", "RS512"]


class QkdDevice(BaseModel):
    """A real QKD device's ETSI GS QKD 014 endpoint that this site offers as a network node.

    The service calls it as the SAE ``sae_id`` with the site's client certificate; experimenters'
    SAEs never see these credentials."""

    model_config = {"extra": "forbid"}
    url: str = Field(pattern=r"^https://[^/\s]+/?$", description="https://host:port of the device's KME")
    sae_id: str = Field(description="this site's SAE_ID at the device (its client certificate's)")
    client_cert: Path
    client_key: Path
    ca_cert: Path  # the CA that signed the device's server certificate


def is_loopback_name(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("slices-blueprint", appauthor=False))


class Settings(BaseSettings):
    """Every setting of the service; README.md documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="SLICES_BLUEPRINT_", env_nested_delimiter="__", extra="ignore",
        populate_by_name=True,  # Settings(database_url=...) as well as DATABASE_URL
        hide_input_in_errors=True,  # a rejected value may be a secret: never echo it
    )

    # Where and how we run
    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str | None = None  # defaults to http://{host}:{port}
    site_id: str = "local-dev1"
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "SLICES_BLUEPRINT_DATABASE_URL"),
    )
    run_worker_in_serve: bool = True
    # PostgreSQL sessions each API process keeps open (no overflow beyond: a request waits for
    # a free one); a lost connection is replaced on its next use
    db_pool_size: int = Field(default=20, ge=1)
    worker_concurrency: int = 8

    # Identity
    # Dev mode: a local issuer whose tokens the service trusts. Only when asked for (this
    # setting or `serve --dev`), and only with a loopback listener and a loopback public URL.
    dev_mode: bool = False
    # In dev mode, requests must name a loopback host; a test network's agents (in network
    # namespaces, through a relay) may also name IP addresses in these networks. IP literals
    # only: a DNS name could be rebound.
    dev_allowed_networks: list[IPvAnyNetwork] = []
    trusted_issuers: list[TrustedIssuer] = Field(
        default_factory=lambda: [TrustedIssuer(issuer="https://portal.slices-ri.eu")]
    )
    admin_user_ids: list[str] = []
    token_leeway_seconds: int = 30
    jwks_cache_seconds: int = 3600
    experiment_audiences: list[str] = []  # extra audiences accepted on experiment JWTs

    # Resources
    default_lifetime_hours: int = 24
    max_lifetime_days: int = 30  # cap when the experiment's expiry is unknown
    reaper_interval_seconds: int = 60
    reconcile_interval_seconds: int = 300
    delete_orphans: bool = True  # delete provider objects a gone resource left behind
    orphan_grace_minutes: int = Field(default=30, ge=0)  # ... once orphaned this long
    catalog_sync_interval_seconds: int = 3600  # site-wide providers' catalogs
    task_max_attempts: int = 5
    # A create that finds no live place but expects one soon (a microVM host that registered
    # before, or holds an unused enrolment: `serve --dev`'s local host starting) is retried
    # for this long, however many attempts that takes, before it fails.
    placement_wait_seconds: int = Field(default=60, ge=0)

    # Secrets at rest: Fernet keys, newest first (rotation: prepend a new key).
    # When empty, a key is generated in data_dir/secret.key.
    encryption_keys: list[SecretStr] = []

    # Providers: which flavor types are enabled (test-double only outside production)
    providers: list[str] = ["vm", "k8s", "microvm"]
    openstack_clouds_yaml: Path | None = None  # operator's site-wide cloud
    openstack_cloud: str | None = None
    # Networks (CIDR) and host name patterns (fnmatch) that users' uploaded clouds.yaml and
    # kubeconfig files may reach besides public addresses (private, loopback and link-local
    # addresses are refused otherwise: an SSRF guard). Site-wide credentials are not limited.
    uploaded_endpoints_allowed: list[str] = []
    kubernetes_kubeconfig: Path | None = None  # operator's site-wide cluster
    kubernetes_context: str | None = None
    kubernetes_ready_timeout_seconds: float = 300.0  # a pod must be Running+Ready within this
    kubernetes_unschedulable_grace_seconds: float = 60.0  # Unschedulable -> error after this
    kubernetes_delete_grace_seconds: int = 30  # pod termination grace period
    kubernetes_cpu_request_fraction: float = Field(default=1.0, gt=0, le=1)  # CPU request / limit
    # Kubernetes pod lockdown: the Pod Security level experiment namespaces are labelled with
    # (and pods' securityContext follows: "restricted" adds runAsNonRoot; "baseline" for images
    # that must start as root), and the cluster's pod/service networks, which the experiment
    # NetworkPolicy's internet egress excludes besides private, loopback and link-local ranges.
    kubernetes_pod_security: Literal["restricted", "baseline"] = "restricted"
    kubernetes_cluster_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    # MicroVM hosts (slices-blueprint agent)
    # (each host enrols with its own one-time token: `admin host-enrol NAME`; no shared secret)
    host_enrolment_ttl_hours: float = Field(default=24, gt=0, le=720)  # enrolment tokens expire
    host_heartbeat_seconds: int = 15  # told to agents at registration
    host_lost_after_seconds: int = 60  # no heartbeat for this long: the host is lost
    local_microvm_host: bool = True  # dev mode: `serve` runs an agent as a local host
    metrics_retention_hours: int = Field(default=48, ge=1)  # per-VM metrics history kept

    # Prometheus /metrics: answered to this bearer token, or to clients in these networks
    # (CIDRs; loopback is added in dev mode); everyone else gets 403.
    metrics_token: SecretStr | None = None
    metrics_allowed_networks: list[str] = []

    # Quotas and request limits (quotas: site defaults per project, unset = unlimited;
    # admins override them per project with PUT /api/v1/quotas/{project_id})
    quota_instances: int | None = Field(default=None, ge=0)  # live resources per project
    quota_vcpus: int | None = Field(default=None, ge=0)  # their flavors' vCPUs, summed
    quota_ram_mib: int | None = Field(default=None, ge=0)  # their flavors' RAM, summed
    quota_flavor_types: dict[str, NonNegativeInt] = {}  # per flavor type, e.g. {microvm = 4}
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # larger bodies: 413
    max_request_config_bytes: int = Field(default=16 * 1024, ge=2)  # a request_config, as JSON
    max_userdata_bytes: int = Field(default=64 * 1024, ge=0)  # a resource's userdata, UTF-8
    max_waits_per_experiment: int = Field(default=10, ge=1)  # concurrent GET .../wait (per process)
    audit_events_per_resource_per_minute: int = Field(default=60, ge=1)  # more: only logged

    # QKD networks: emulated KMEs listen on qkd_kme_host, one port each from qkd_kme_ports
    # (inclusive range), and are reached by SAEs at https://<qkd_kme_public_host>:<port>
    # (their certificates name it). `serve` runs them (qkd_kme_in_service), or `kme-host`
    # processes (several at once with qkd_kme_reuse_port).
    qkd_kme_host: str = "127.0.0.1"
    qkd_kme_public_host: str | None = None  # default: qkd_kme_host
    qkd_kme_ports: tuple[int, int] = (47100, 47999)
    qkd_kme_in_service: bool = True
    qkd_kme_reuse_port: bool = False  # several kme-host processes share each KME's port
    # kme-host's Prometheus metrics (keys served, refusals) at http://127.0.0.1:<port>/metrics;
    # off by default (serve shows them on its own /metrics)
    qkd_kme_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    qkd_max_kmes_per_project: int = Field(default=32, ge=0)  # KMEs of live networks, summed
    qkd_devices: dict[str, QkdDevice] = {}  # real devices by name, offered as `device:` nodes

    # Reservations (advance leases of equipment and microVM host capacity): how far ahead a
    # reservation may end, the warning before one ends, and the reserved hours a project may
    # hold (each equipment item and each capacity share counts its hours; unset = unlimited;
    # admins override it per project with PUT /api/v1/reservation-limits/{project_id})
    reservation_horizon_days: int = Field(default=180, ge=1, le=3650)
    reservation_warning_minutes: float = Field(default=15, ge=0)
    reservation_max_hours_per_project: int | None = Field(default=None, ge=0)

    # Logs
    log_level: str = "INFO"
    log_json: bool = False

    # Web UI
    oidc_discovery_url: str | None = None  # the SLICES provider's .well-known/openid-configuration
    oidc_client_id: str | None = None  # also accepted as the audience of user id-tokens
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile email"
    web_session_hours: int = 12

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @field_validator("encryption_keys")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """Refuse a key that is not a Fernet key at start-up, not at the first upload."""
        for number, key in enumerate(keys, 1):
            try:
                Fernet(key.get_secret_value())
            except ValueError:
                raise ValueError(
                    f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes; make "
                    "one with: python -c \"from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())\")"
                ) from None
        return keys

    @model_validator(mode="after")
    def _check_dev_mode(self) -> Settings:
        if self.dev_mode and not self.bind_is_loopback:
            raise ValueError(
                "dev_mode signs tokens with a local key and is refused unless the service "
                f"listens on loopback only (host={self.host!r})"
            )
        if self.dev_mode and not is_loopback_name(urlsplit(self.service_url).hostname or ""):
            raise ValueError(
                "dev_mode signs tokens with a local key and is refused when public_url is not a "
                "loopback URL (a service reached through a proxy must not hand out dev tokens)"
            )
        if "test-double" in self.providers and not self.dev_mode:
            raise ValueError("the 'test-double' provider exists for tests and needs dev_mode")
        return self

    @property
    def bind_is_loopback(self) -> bool:
        return is_loopback_name(self.host)

    @property
    def uses_embedded_db(self) -> bool:
        return not self.database_url

    @property
    def service_url(self) -> str:
        """The audience of user id-tokens: this service's public URL, no trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def dev_issuer(self) -> str:
        return f"{self.service_url}/dev/issuer"


@lru_cache
def get_settings() -> Settings:
    return Settings()
