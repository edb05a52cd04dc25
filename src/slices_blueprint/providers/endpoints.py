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
rebinding) is not caught: an egress firewall on the service's host closes that gap. Guarded
clients connect directly: a proxy (from the credential or the environment) would resolve and
reach names past the check.

"Public" is :attr:`ipaddress.IPv4Address.is_global` (not multicast), plus for IPv6: not
site-local (``fec0::/10``) nor local-use NAT64 (``64:ff9b:1::/48``), which this Python still
calls global, and every IPv4 address the IPv6 address carries (IPv4-mapped, IPv4-compatible
``::a.b.c.d``, 6to4 ``2002::/16``, Teredo ``2001::/32``, NAT64 ``64:ff9b::/96``) is judged as
an address of its own: ``64:ff9b::7f00:1`` is 127.0.0.1 behind a NAT64 gateway.
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
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 ranges ipaddress (Python 3.11) still calls global
_NOT_GLOBAL_V6 = tuple(map(ipaddress.IPv6Network, ("fec0::/10", "64:ff9b:1::/48")))
# IPv6 ranges whose last 32 bits are the IPv4 address the packets end up at
_IPV4_IN_LOW_BITS = tuple(map(ipaddress.IPv6Network, ("::/96", "64:ff9b::/96")))


class UnsafeCredential(ProviderError):
    """An uploaded credential asks for something the site never does for uploads."""


class EndpointNotAllowed(UnsafeCredential):
    """An uploaded credential points at an address the site does not allow."""


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (6to4, Teredo, NAT64, IPv4-compatible)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found = [address.sixtofour] if address.sixtofour else []
    found += list(address.teredo or ())
    if any(address in net for net in _IPV4_IN_LOW_BITS):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: Address) -> bool:
    """Whether ``address`` itself is a public unicast address (embedded IPv4 not judged)."""
    if address.is_multicast or not address.is_global:
        return False
    return not any(address in net for net in _NOT_GLOBAL_V6)


class EndpointPolicy:
    """Public addresses, plus the allowed networks (CIDR) and host name patterns (fnmatch)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.networks: list[Network] = []
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

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be called (the address, described), or None if it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            inner = self.refusal(address.ipv4_mapped)  # the packets go to the IPv4 address
            return f"{address} (which is the IPv4 address {inner})" if inner else None
        if any(address in net for net in self.networks):
            return None
        if not is_public(address):
            return str(address)
        for inner in embedded_ipv4(address):
            if self.refusal(inner):
                return f"{address} (which carries the IPv4 address {inner})"
        return None

    def check_url(self, url: str, what: str) -> None:
        """Raise :class:`EndpointNotAllowed` unless every address of ``url``'s host is allowed."""
        parts = urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no user:password
        host = parts.hostname
        if not host:
            raise EndpointNotAllowed(f"{what} {shown!r} names no host")
        if any(fnmatch.fnmatch(host.lower(), pattern) for pattern in self.hosts):
            return
        for address in _addresses(host, what):
            refused = self.refusal(address)
            if refused:
                raise EndpointNotAllowed(
                    f"{what} {shown} reaches {refused}, a non-public address this site does not "
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
    """Make a ``requests.Session`` check every request with ``policy`` and connect directly:
    no proxy or ``.netrc`` login from the service's environment (a proxy would resolve and
    reach names itself, past the check)."""
    session.trust_env = False
    session.proxies.clear()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _GuardedAdapter(policy))
