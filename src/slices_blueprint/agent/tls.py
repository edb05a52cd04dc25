"""The agent's TLS identity: a self-signed certificate made at first start in
``data_dir/tls`` (key 0600 in a 0700 folder), handed to the service at enrolment, which then
trusts that certificate only (``hosts/pinning.py``). Delete the folder to make a new one;
the agent then registers again with its own token, sending the new certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from slices_blueprint.agent.auth import write_private
from slices_blueprint.agent.config import AgentSettings

log = structlog.get_logger(__name__)

VALIDITY = dt.timedelta(days=3650)  # pinned, not chained: expiry adds nothing but outages


@dataclass(frozen=True)
class AgentCertificate:
    cert_path: Path
    key_path: Path

    @property
    def pem(self) -> str:
        return self.cert_path.read_text()

    @property
    def sha256(self) -> str:
        certificate = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        return certificate.fingerprint(hashes.SHA256()).hex()


def _names(settings: AgentSettings) -> list[x509.GeneralName]:
    """Subject alternative names: the advertised and listening host (for humans' tools)."""
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in {urlparse(settings.url).hostname, settings.listen_host} - {None, "localhost"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def ensure_certificate(settings: AgentSettings) -> AgentCertificate:
    """The agent's certificate and key, made (ECDSA P-256) when missing."""
    folder = settings.tls_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    made = AgentCertificate(folder / "cert.pem", folder / "key.pem")
    if made.cert_path.exists() and made.key_path.exists():
        return made
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = f"slices-agent {settings.name}"[:64]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_names(settings)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(made.key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_private(made.cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    log.info("agent.certificate_created", path=str(made.cert_path), sha256=made.sha256)
    return made
