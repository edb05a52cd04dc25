"""Dev mode answers loopback host names only.

A dev-mode service hands out tokens to anyone who asks, so it must only be reachable from
this machine. Listening on loopback is not enough: a web page the developer opens can point
its own DNS name at 127.0.0.1 (DNS rebinding) and call the service from the browser. Such
requests carry the page's host name in ``Host``, which this middleware refuses (421). IP
addresses in ``dev_allowed_networks`` (a test network) are answered too: an address cannot be
rebound."""

from __future__ import annotations

import ipaddress

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from slices_blueprint.core.config import IPvAnyNetwork, is_loopback_name
from slices_blueprint.core.errors import problem

log = structlog.get_logger(__name__)


def host_name(header: str) -> str:
    """The host part of a ``Host`` header: ``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def allowed(host: str, networks: list[IPvAnyNetwork]) -> bool:
    """A loopback name, or an IP address inside one of ``networks``."""
    if is_loopback_name(host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


class LoopbackHostOnly:
    """Refuse (421 Misdirected Request) every request whose ``Host`` is not a loopback name
    (or an address in ``networks``)."""

    def __init__(self, app: ASGIApp, networks: list[IPvAnyNetwork]) -> None:
        self.app, self.networks = app, networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not allowed(host_name(header), self.networks):
                log.warning("dev_mode.foreign_host_refused", host=header[:100], path=scope.get("path"))
                response = problem(421, "Misdirected request",
                                   "this service runs in dev mode and answers only requests addressed "
                                   "to a loopback name (localhost, 127.0.0.1, [::1])")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
