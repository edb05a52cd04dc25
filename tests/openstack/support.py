"""Shared pieces of the OpenStack integration tests (imported by conftest and the tests)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keystoneauth1.exceptions as ks_exc
import openstack.exceptions as os_exc
import yaml
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from slices_blueprint.providers.base import NodeSpec
from slices_blueprint.providers.openstack.driver import META_RESOURCE
from tests.conftest import integration_unavailable

AIO_CLOUDS_YAML = Path(os.environ.get("AIO_CLOUDS_YAML", "/var/lib/openstack-aio/clouds.yaml"))
AIO_CLOUD = "aio"
SUFFIX = secrets.token_hex(3)
PREFIX = f"sbt-{SUFFIX}"
USER_PASSWORD = secrets.token_urlsafe(12)


def in_cidr(cidr: str, address: str | None) -> bool:
    return address is not None and ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


def cloud_unavailable(reason: str) -> None:
    """Skip (or fail, when CI requires integration tests) with the reason shown."""
    integration_unavailable(
        f"OpenStack AIO not running: start ../shared/tools/openstack-aio.sh ({reason})"
    )


@dataclass
class Recorder:
    """A ``Progress`` callback that remembers what it was told."""

    calls: list[tuple[int, str]] = field(default_factory=list)

    async def __call__(self, pct: int, message: str) -> None:
        self.calls.append((pct, message))

    @property
    def percents(self) -> list[int]:
        return [pct for pct, _ in self.calls]


@dataclass
class Cloud:
    """What the session set up in the AIO cloud."""

    admin: Connection
    clouds_yaml: bytes
    auth_url: str
    image_id: str
    image_name: str
    flavor_id: str
    flavor_name: str
    error_flavor_id: str
    network_name: str
    subnet_cidr: str
    external_cidr: str
    external_network_name: str
    project_id: str
    project_clouds_yaml: bytes

    def spec(self, **overrides: Any) -> NodeSpec:
        """A spec for a server on the test network, with a resource id unique to the call."""
        fields: dict[str, Any] = {
            "resource_id": f"res_test-os_{SUFFIX}{secrets.token_hex(8)}",
            "name": f"{PREFIX}-vm",
            "experiment_id": "exp_test-os_0000",
            "project_id": "proj_test-os_0000",
            "image_location": self.image_id,
            "image_default_username": "debian",
            "flavor_ref": self.flavor_id,
            "vcpus": 1,
            "ram_mib": 64,
            "disk_mb": 1024,
            "network_interfaces": [self.network_name],
        }
        return NodeSpec(**(fields | overrides))

    def servers_of(self, resource_id: str) -> list[Any]:
        """Every server (any project) tagged with ``resource_id`` and not deleted, as the admin
        sees them (nova may list a deleted server, status DELETED, for a moment)."""
        return [
            s
            for s in self.admin.compute.servers(details=True, all_projects=True)
            if (s.metadata or {}).get(META_RESOURCE) == resource_id and s.status != "DELETED"
        ]


def admin_connection() -> Connection:
    if not AIO_CLOUDS_YAML.exists():
        cloud_unavailable(f"{AIO_CLOUDS_YAML} does not exist")
    config = OpenStackConfig(config_files=[str(AIO_CLOUDS_YAML)], load_envvars=False)
    conn = Connection(config=config.get_one(AIO_CLOUD, api_timeout=60))
    try:
        conn.authorize()
        next(iter(conn.compute.flavors()), None)
        next(iter(conn.network.networks()), None)
    except (ks_exc.ClientException, os_exc.SDKException) as exc:
        cloud_unavailable(f"{type(exc).__name__}: {exc}")
    return conn


def project_clouds_yaml(auth_url: str, project: str, user: str) -> bytes:
    auth = {
        "auth_url": auth_url,
        "username": user,
        "password": USER_PASSWORD,
        "project_name": project,
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    cloud = {"auth": auth, "region_name": "RegionOne", "identity_api_version": 3}
    return yaml.safe_dump({"clouds": {"throwaway": cloud}}).encode()
