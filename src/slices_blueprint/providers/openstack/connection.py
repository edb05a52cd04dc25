"""The openstacksdk connection: a ``clouds.yaml`` entry parsed in memory, uploaded clouds
guarded by the endpoint policy, connections shared between drivers built from the same cloud."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keystoneauth1.exceptions as ks_exc
import openstack
import openstack.exceptions as os_exc
import yaml
from openstack.connection import Connection

from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.endpoints import (
    EndpointPolicy,
    UnsafeCredential,
    guard_requests_session,
)

MAX_SHARED_CONNECTIONS = 64
# cloud keys an uploaded clouds.yaml may not use: openstacksdk acts on them before (or outside)
# the guarded session
UPLOAD_REFUSED_KEYS = {
    "profile": "vendor profiles are fetched from a URL outside the endpoint check",
    "cloud": "an old name of 'profile': vendor profiles are fetched from a URL",
    "vendor_hook": "it names Python code for this server to run",
    "cacert": "it names a file on this server",
    "cert": "it names a file on this server",
    "key": "it names a file on this server",
}


def parse_clouds_yaml(plaintext: bytes, selected: str | None) -> tuple[str, dict[str, Any]]:
    """The chosen cloud's name and settings from ``clouds.yaml`` bytes, or a clear error."""
    try:
        doc = yaml.safe_load(plaintext)
    except yaml.YAMLError as exc:
        raise ProviderError(f"clouds.yaml is not valid YAML: {_yaml_problem(exc)}") from None
    clouds = doc.get("clouds") if isinstance(doc, dict) else None
    if not isinstance(clouds, dict) or not clouds:
        raise ProviderError("clouds.yaml has no 'clouds:' section with at least one cloud")
    names = ", ".join(sorted(map(str, clouds)))
    if selected is None:
        if len(clouds) != 1:
            raise ProviderError(f"clouds.yaml defines several clouds ({names}): choose one")
        selected = str(next(iter(clouds)))
    cloud = clouds.get(selected)
    if cloud is None:
        raise ProviderError(f"cloud {selected!r} is not in clouds.yaml (it defines: {names})")
    if not isinstance(cloud, dict) or not isinstance(cloud.get("auth"), dict):
        raise ProviderError(f"cloud {selected!r} in clouds.yaml has no 'auth:' section")
    return selected, cloud


def refuse_unsafe_keys(cloud_name: str, cloud: dict[str, Any]) -> None:
    """UnsafeCredential when an uploaded cloud uses a key of :data:`UPLOAD_REFUSED_KEYS`."""
    for key, why in UPLOAD_REFUSED_KEYS.items():
        if key in cloud:
            raise UnsafeCredential(
                f"cloud {cloud_name!r} sets {key}: an uploaded clouds.yaml may not use it ({why}); "
                "write auth_url, region_name and the other settings into the file itself"
            )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what the YAML error is, without quoting the file (it holds a password)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "unreadable document"
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem



@dataclass
class SharedConnection:
    """A connection and what was learnt about its cloud."""

    conn: Connection
    tags_supported: bool | None = None


_shared: OrderedDict[str, SharedConnection] = OrderedDict()
_shared_lock = threading.Lock()


def connect(
    cloud_name: str, cloud: dict[str, Any], api_timeout_s: float, policy: EndpointPolicy | None
) -> Connection:
    """A connection (it signs in on first use); with ``policy`` (an uploaded clouds.yaml), keys
    the SDK would act on outside the guarded session are refused, and every request it makes
    to keystone or to the catalog's endpoints is checked first."""
    auth_url = cloud["auth"].get("auth_url")
    if policy is not None:
        refuse_unsafe_keys(cloud_name, cloud)
        if auth_url:
            policy.check_url(str(auth_url), "the auth_url")
    try:
        conn = openstack.connect(
            load_yaml_config=False,
            load_envvars=False,
            app_name="slices-blueprint",
            **{**cloud, "api_timeout": api_timeout_s},
        )
    except (ks_exc.ClientException, os_exc.SDKException) as exc:
        raise ProviderError(f"cloud {cloud_name!r} in clouds.yaml is not usable: {exc}") from None
    if policy is not None:
        guard_requests_session(conn.session.session, policy)
    return conn


def shared_connection(
    cloud_name: str, cloud: dict[str, Any], api_timeout_s: float, policy: EndpointPolicy | None
) -> SharedConnection:
    """One connection per distinct cloud settings, kept for later tasks (least recently used
    dropped beyond :data:`MAX_SHARED_CONNECTIONS`): drivers are built per task, and signing
    in plus endpoint discovery cost more than most calls. keystoneauth renews the token."""
    guard = policy.key if policy is not None else None
    key = hashlib.sha256(
        json.dumps([cloud, api_timeout_s, guard], sort_keys=True, default=str).encode()
    ).hexdigest()
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            entry = _shared[key] = SharedConnection(
                connect(cloud_name, cloud, api_timeout_s, policy))
            while len(_shared) > MAX_SHARED_CONNECTIONS:
                _shared.popitem(last=False)  # closed once no driver uses it any more
        _shared.move_to_end(key)
        return entry



def read_site_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProviderError(
            f"the site-wide clouds.yaml {path} cannot be read: {exc.strerror}"
        ) from None
