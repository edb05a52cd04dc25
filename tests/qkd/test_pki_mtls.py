"""A KME's mutual TLS: real certificates from qkd/pki.py, real sockets on 127.0.0.1, the
third-party ``etsi-qkd-014-client`` as the SAE. Refusals are checked with the standard
library's TLS client, whose error names the alert the KME sent."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from etsi_qkd_014_client import QKD014Client
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import Request as StarletteRequest

from slices_blueprint.qkd.pki import (
    Issued,
    issue_kme_certificate,
    issue_sae_certificate,
    new_authority,
    sae_id_of,
)
from slices_blueprint.qkd.tls_server import (
    CallerSAE,
    SAEUnauthenticated,
    TLSServer,
    caller_sae_id,
    serve_tls,
)

HOUR = dt.timedelta(hours=1)
LOOPBACK = "127.0.0.1"


def status_app(kme_id: str) -> FastAPI:
    """A KME answering ETSI 014's status call with the SAE_ID of its verified caller."""
    app = FastAPI()

    @app.exception_handler(SAEUnauthenticated)
    async def unauthorized(_request: Request, exc: SAEUnauthenticated) -> JSONResponse:
        return JSONResponse({"message": "unauthorized", "details": [{"reason": str(exc)}]}, 401)

    @app.get("/api/v1/keys/{slave}/status")
    async def status(slave: str, caller: CallerSAE) -> dict[str, object]:
        return {"source_KME_ID": kme_id, "target_KME_ID": "KME_peer", "master_SAE_ID": caller,
                "slave_SAE_ID": slave, "key_size": 256, "stored_key_count": 0,
                "max_key_count": 1000, "max_key_per_request": 128, "max_key_size": 1024,
                "min_key_size": 64, "max_SAE_ID_count": 0}

    return app


@dataclass(frozen=True)
class Network:
    ca: Issued
    folder: Path

    def write(self, name: str, issued: Issued) -> tuple[str, str]:
        """PEM files for a client that reads them from disk."""
        cert, key = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        key.chmod(0o600)
        return str(cert), str(key)

    @property
    def ca_path(self) -> str:
        path = self.folder / "ca.crt"
        path.write_bytes(self.ca.cert_pem)
        return str(path)

    def sae(self, sae_id: str, port: int, *, valid_for: dt.timedelta = HOUR) -> QKD014Client:
        cert, key = self.write(sae_id, issue_sae_certificate(self.ca, sae_id, valid_for=valid_for))
        return QKD014Client(f"{LOOPBACK}:{port}", cert, key, self.ca_path)


def new_network(folder: Path, name: str) -> Network:
    folder.mkdir()
    return Network(new_authority(f"qkd network {name}", valid_for=HOUR), folder)


Starter = Callable[..., Awaitable[TLSServer]]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    """Starts KMEs on free loopback ports; stops them all after the test."""
    started: list[TLSServer] = []

    async def starter(network: Network, kme_id: str, *, hosts: tuple[str, ...] = (LOOPBACK,)
                      ) -> TLSServer:
        identity = issue_kme_certificate(network.ca, kme_id, hosts=list(hosts), valid_for=HOUR)
        server = await serve_tls(status_app(kme_id), host=LOOPBACK, port=0, server=identity,
                                 ca_cert_pem=network.ca.cert_pem)
        started.append(server)
        return server

    yield starter
    for server in started:
        await server.stop()


def tls_answer(port: int, network: Network, client: Issued | None = None, *,
               version: ssl.TLSVersion | None = None) -> str:
    """The start of the KME's answer to a GET over TLS (``HTTP/1.1 200``), or ``refused``.

    asyncio closes a connection whose handshake failed without sending the TLS alert, so a
    refused client sees the connection end, not the reason: each refusal below is paired
    with a call that differs in one thing only and gets through.
    """
    context = ssl.create_default_context(cafile=network.ca_path)
    if client is not None:
        context.load_cert_chain(*network.write("client", client))
    if version is not None:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets the client offer TLS 1.1 at all
        context.minimum_version = context.maximum_version = version
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
            tls.sendall(b"GET /api/v1/keys/SAE_B/status HTTP/1.1\r\nHost: kme\r\n"
                        b"Connection: close\r\n\r\n")
            return tls.recv(12).decode() or "refused"
    except (ssl.SSLEOFError, ConnectionResetError):
        return "refused"


async def test_an_sae_gets_its_own_sae_id_from_its_certificate(start, tmp_path) -> None:
    network = new_network(tmp_path / "a", "a")
    kme = await start(network, "KME_A")
    code, status = await asyncio.to_thread(network.sae("SAE_A1", kme.port).get_status, "SAE_B")
    assert code == 200
    assert (status.master_sae_id, status.slave_sae_id, status.source_kme_id) == (
        "SAE_A1", "SAE_B", "KME_A")


async def test_the_sae_verifies_the_kme_certificate_names_its_address(start, tmp_path) -> None:
    network = new_network(tmp_path / "a", "a")
    kme = await start(network, "KME_A", hosts=("kme-a.example",))  # no 127.0.0.1 in the SAN
    with pytest.raises(requests.exceptions.SSLError, match="IP address mismatch"):
        await asyncio.to_thread(network.sae("SAE_A1", kme.port).get_status, "SAE_B")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_callers_without_a_valid_certificate_of_this_network_are_refused(
        start, tmp_path) -> None:
    network, other = new_network(tmp_path / "a", "a"), new_network(tmp_path / "b", "b")
    kme = await start(network, "KME_A")
    port = kme.port
    member = issue_sae_certificate(network.ca, "SAE_A1", valid_for=HOUR)
    expired = issue_sae_certificate(network.ca, "SAE_A2", valid_for=dt.timedelta(milliseconds=1))
    stranger = issue_sae_certificate(other.ca, "SAE_A1", valid_for=HOUR)  # same name, other CA
    server_only = issue_kme_certificate(network.ca, "KME_X", hosts=[LOOPBACK], valid_for=HOUR)
    await asyncio.sleep(1.5)  # the millisecond certificate has expired

    async def answer(client: Issued | None, version: ssl.TLSVersion | None = None) -> str:
        return await asyncio.to_thread(tls_answer, port, network, client, version=version)

    assert await answer(member) == "HTTP/1.1 200"
    assert await answer(None) == "refused"
    assert await answer(stranger) == "refused"
    assert await answer(expired) == "refused"
    assert await answer(server_only) == "refused"  # a KME's certificate: no clientAuth
    assert await answer(member, ssl.TLSVersion.TLSv1_2) == "HTTP/1.1 200"
    assert await answer(member, ssl.TLSVersion.TLSv1_1) == "refused"


async def test_two_kmes_in_one_event_loop_each_see_their_own_callers(start, tmp_path) -> None:
    network = new_network(tmp_path / "a", "a")
    kme_a, kme_b = await start(network, "KME_A"), await start(network, "KME_B")
    assert kme_a.port != kme_b.port
    sae_a, sae_b = network.sae("SAE_A1", kme_a.port), network.sae("SAE_B1", kme_b.port)
    for _ in range(3):
        (code_a, at_a), (code_b, at_b) = await asyncio.gather(
            asyncio.to_thread(sae_a.get_status, "SAE_B1"),
            asyncio.to_thread(sae_b.get_status, "SAE_A1"))
        assert (code_a, at_a.source_kme_id, at_a.master_sae_id) == (200, "KME_A", "SAE_A1")
        assert (code_b, at_b.source_kme_id, at_b.master_sae_id) == (200, "KME_B", "SAE_B1")


async def test_a_stopped_kme_no_longer_listens(start, tmp_path) -> None:
    network = new_network(tmp_path / "a", "a")
    kme = await start(network, "KME_A")
    await kme.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, kme.port), timeout=5).close()


def test_a_request_without_a_verified_certificate_has_no_sae_id() -> None:
    plain = StarletteRequest({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(SAEUnauthenticated, match="no verified client certificate"):
        caller_sae_id(plain)


@pytest.mark.parametrize("bad", ["", "-SAE", "SAE A", "SAE/1", "é", "x" * 65, "SAE\n"])
def test_names_that_are_not_sae_ids_get_no_certificate(bad: str) -> None:
    ca = new_authority("qkd network a", valid_for=HOUR)
    with pytest.raises(ValueError, match="SAE_ID must match"):
        issue_sae_certificate(ca, bad, valid_for=HOUR)
    with pytest.raises(ValueError, match="KME_ID must match"):
        issue_kme_certificate(ca, bad, hosts=[LOOPBACK], valid_for=HOUR)


def test_certificates_carry_the_roles_the_brief_names() -> None:
    ca = new_authority("qkd network a", valid_for=HOUR)
    authority = x509.load_pem_x509_certificate(ca.cert_pem)
    constraints = authority.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)
    assert authority.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign

    kme = x509.load_pem_x509_certificate(
        issue_kme_certificate(ca, "KME_A", hosts=["kme-a.example", "::1"], valid_for=HOUR).cert_pem)
    names = kme.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kme-a.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["::1"]
    assert list(kme.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]

    sae = x509.load_pem_x509_certificate(
        issue_sae_certificate(ca, "SAE_A1", valid_for=HOUR).cert_pem)
    assert sae_id_of(sae.public_bytes(Encoding.DER)) == "SAE_A1"
    assert sae.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(seconds=50)
    assert time.time() + 3500 < sae.not_valid_after_utc.timestamp() <= time.time() + 3600
    with pytest.raises(ValueError, match="positive"):
        issue_sae_certificate(ca, "SAE_A1", valid_for=dt.timedelta(0))


async def test_a_kme_app_that_fails_to_start_frees_its_port(tmp_path) -> None:
    network = new_network(tmp_path / "a", "a")

    @contextlib.asynccontextmanager
    async def broken(_app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("pool unreadable")
        yield

    identity = issue_kme_certificate(network.ca, "KME_A", hosts=[LOOPBACK], valid_for=HOUR)
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    with pytest.raises(RuntimeError, match="failed to start"):
        await serve_tls(FastAPI(lifespan=broken), host=LOOPBACK, port=port, server=identity,
                        ca_cert_pem=network.ca.cert_pem)
    with socket.socket() as again:
        again.bind((LOOPBACK, port))  # free again
