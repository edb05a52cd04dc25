"""Which endpoints a user's uploaded credential may make the service call (SSRF guard).

An uploaded clouds.yaml or kubeconfig names URLs the service then calls from inside the
site's network. Without a guard, a user could point it at internal services or the cloud
metadata address (169.254.169.254). Uploaded credentials may reach public addresses, plus
the networks and host names the operator lists in ``uploaded_endpoints_allowed``; the
operator's own site-wide credentials are not restricted.

Every address a host name resolves to must be allowed. OpenStack calls are checked on
each request (keystone's catalog may name other hosts); a Kubernetes client only ever talks
to its server, which is checked when the client is built. The check resolves the name
itself, so a name whose answer changes between the check and the connection (DNS
rebinding) is not caught: an egress firewall on the service's host closes that gap.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter

from slices_blueprint.providers.base import ProviderError

if TYPE_CHECKING:
    from slices_blueprint.core.config import Settings

SETTING = "uploaded_endpoints_allowed"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EndpointNotAllowed(ProviderError):
    """An uploaded credential points at an address the site does not allow."""


class EndpointPolicy:
    """Public addresses, plus the allowed networks (CIDR) and host name patterns (fnmatch)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: list[str] = []
        for entry in allowed:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.append(entry.lower())

    @classmethod
    def of(cls, settings: Settings) -> EndpointPolicy:
        return cls(settings.uploaded_endpoints_allowed)

    @property
    def key(self) -> tuple[str, ...]:
        """What the policy allows, as a hashable value (connection caches key on it)."""
        return tuple(sorted(map(str, self.networks))) + tuple(sorted(self.hosts))

    def _address_allowed(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return address.is_global or any(address in net for net in self.networks)

    def check_url(self, url: str, what: str) -> None:
        """Raise :class:`EndpointNotAllowed` unless every address of ``url``'s host is allowed."""
        host = urlsplit(url).hostname
        if not host:
            raise EndpointNotAllowed(f"{what} {url!r} names no host")
        if any(fnmatch.fnmatch(host.lower(), pattern) for pattern in self.hosts):
            return
        for address in _addresses(host, what):
            if not self._address_allowed(address):
                raise EndpointNotAllowed(
                    f"{what} {url} reaches {address}, a non-public address this site does not "
                    f"let uploaded credentials use (the operator can allow it in {SETTING})"
                )


def _addresses(host: str, what: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProviderError(f"{what}: cannot resolve {host} ({exc.strerror or exc})") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


class _GuardedAdapter(HTTPAdapter):
    """A requests adapter that checks every request's host against the policy first."""

    def __init__(self, policy: EndpointPolicy) -> None:
        super().__init__()
        self.policy = policy

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.policy.check_url(request.url, "the cloud endpoint")
        return super().send(request, *args, **kwargs)


def guard_requests_session(session: Any, policy: EndpointPolicy) -> None:
    """Make a ``requests.Session`` check every request with ``policy``."""
    for prefix in ("http://", "https://"):
        session.mount(prefix, _GuardedAdapter(policy))
