"""Serving a KME's ASGI app over mutual TLS, the caller's SAE_ID taken from its certificate.

uvicorn 0.55 verifies client certificates but does not hand them to the app (neither the
ASGI TLS extension nor the transport is in the scope; hypercorn lacks the extension too).
So the servers here use uvicorn's h11 protocol with one addition: once the handshake has
verified the client, the connection adds ``scope["extensions"]["tls"]`` (ASGI TLS
extension 0.2, the leaf certificate only, as Python's ``ssl`` offers no verified chain
before 3.13) to every request it carries (h11 rather than httptools: one well-known
protocol class to extend; a KME's requests are small). Several servers share one event
loop; none installs signal handlers or reconfigures logging. A refused handshake (no
certificate, another CA, expired, TLS < 1.2) ends the connection without a TLS alert: that
is asyncio's way, so clients see the connection closed rather than the reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Annotated, Any

import structlog
import uvicorn
from cryptography import x509
from fastapi import Depends, Request
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from slices_blueprint.qkd.pki import Issued, sae_id_of

log = structlog.get_logger(__name__)

TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
GRACEFUL_SHUTDOWN_SECONDS = 5


class SAEUnauthenticated(Exception):
    """The request carries no verified client certificate naming an SAE (ETSI 014: 401)."""


def kme_ssl_context(server: Issued, ca_cert_pem: bytes) -> ssl.SSLContext:
    """TLS ≥ 1.2, a client certificate required and trusted only if the network's CA signed it.

    The server's key is handed to OpenSSL through an anonymous memory file (Linux
    ``memfd_create``), so the unencrypted key is never written to a file system.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=ca_cert_pem.decode("ascii"))
    with os.fdopen(os.memfd_create("kme-identity", os.MFD_CLOEXEC), "wb") as memory:
        memory.write(server.cert_pem + server.key_pem)
        memory.flush()
        context.load_cert_chain(f"/proc/self/fd/{memory.fileno()}")
    return context


@dataclass
class TLSServer:
    """A KME's listening server; ``stop()`` closes it (idle connections at once)."""

    port: int
    kme: str
    _server: uvicorn.Server = field(repr=False)
    _ticker: asyncio.Task[None] = field(repr=False)

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._ticker
        await self._server.shutdown()
        log.info("qkd.kme_stopped", kme=self.kme, port=self.port)


async def serve_tls(
    app: ASGIApp, *, host: str, port: int, server: Issued, ca_cert_pem: bytes,
    reuse_port: bool = False,
) -> TLSServer:
    """Start serving ``app`` with mutual TLS on host:port (0: a free port) in this event loop;
    with ``reuse_port``, other processes of this user may listen on the same port (the
    kernel spreads connections among them)."""
    context = kme_ssl_context(server, ca_cert_pem)
    config = uvicorn.Config(
        app, http=_VerifiedPeerProtocol, ws="none", lifespan="auto", log_config=None,
        access_log=False, proxy_headers=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ssl_context_factory=lambda _config, _default: context)
    config.load()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, reuse_port=reuse_port)
    try:
        uvicorn_server = uvicorn.Server(config)
        uvicorn_server.lifespan = config.lifespan_class(config)
        await uvicorn_server.startup(sockets=[sock])
    except SystemExit:  # uvicorn's answer to a failed lifespan startup
        sock.close()
        raise RuntimeError("the KME app failed to start") from None
    except BaseException:
        sock.close()
        raise
    handle = TLSServer(sock.getsockname()[1], _subject(server), uvicorn_server,
                       asyncio.create_task(uvicorn_server.main_loop()))
    log.info("qkd.kme_serving", kme=handle.kme, host=host, port=handle.port)
    return handle


def caller_sae_id(request: Request) -> str:
    """The SAE_ID of the verified client certificate (a FastAPI dependency as well)."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        raise SAEUnauthenticated("no verified client certificate")
    try:
        return sae_id_of(ssl.PEM_cert_to_DER_cert(chain[0]))
    except ValueError as exc:
        raise SAEUnauthenticated(str(exc)) from exc


CallerSAE = Annotated[str, Depends(caller_sae_id)]


class _VerifiedPeerProtocol(H11Protocol):
    """uvicorn's h11 protocol adding the ASGI TLS extension to each request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = _tls_extension(transport.get_extra_info("ssl_object"))
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = dict(tls)
            await app(scope, receive, send)

        self.app = with_tls


def _tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    peer = ssl_object.getpeercert(binary_form=True)
    name = x509.load_der_x509_certificate(peer).subject.rfc4514_string() if peer else None
    return {
        "server_cert": None,
        "client_cert_chain": (ssl.DER_cert_to_PEM_cert(peer),) if peer else (),
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


def _subject(issued: Issued) -> str:
    return x509.load_pem_x509_certificate(issued.cert_pem).subject.rfc4514_string()
