"""The certificates of one QKD network: its own authority (EC P-256), one server certificate
per KME and one client certificate per SAE.

The SAE_ID travels as the client certificate's subject common name, the convention of the
open ETSI GS QKD 014 KME implementations (ETSI 014 itself does not say where the SAE_ID
sits in the certificate; no SAN convention exists, so none is added). Keys are returned as
unencrypted PKCS#8 PEM: the caller encrypts them at rest (``core.secretbox``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ENTITY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CLOCK_SKEW = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM (the key PKCS#8, unencrypted)."""

    cert_pem: bytes
    key_pem: bytes


def check_entity_id(value: str, kind: str = "SAE_ID") -> str:
    """``value`` if it is a valid SAE_ID or KME_ID, else ValueError."""
    if not isinstance(value, str) or not ENTITY_ID.fullmatch(value):
        raise ValueError(f"{kind} must match {ENTITY_ID.pattern}: {value!r}")
    return value


def new_authority(common_name: str, *, valid_for: dt.timedelta) -> Issued:
    """A network's certificate authority: signs KME and SAE certificates only (pathlen 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(name, name, key.public_key(), valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
    )
    return _signed(builder, key, key)


def issue_kme_certificate(
    ca: Issued, kme_id: str, *, hosts: list[str], valid_for: dt.timedelta
) -> Issued:
    """A KME's TLS server certificate: CN=kme_id, the host names and addresses as SANs."""
    check_entity_id(kme_id, "KME_ID")
    if not hosts:
        raise ValueError("a KME certificate needs at least one host name or address")
    return _issue_leaf(ca, kme_id, ExtendedKeyUsageOID.SERVER_AUTH, valid_for,
                       [_general_name(host) for host in hosts])


def issue_sae_certificate(ca: Issued, sae_id: str, *, valid_for: dt.timedelta) -> Issued:
    """An SAE's TLS client certificate, the SAE_ID as its subject common name."""
    check_entity_id(sae_id)
    return _issue_leaf(ca, sae_id, ExtendedKeyUsageOID.CLIENT_AUTH, valid_for, [])


def sae_id_of(cert_der: bytes) -> str:
    """The SAE_ID of a client certificate already verified by the TLS handshake."""
    names = x509.load_der_x509_certificate(cert_der).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ValueError("a client certificate names exactly one SAE_ID (common name)")
    return check_entity_id(str(names[0].value))


def _issue_leaf(
    ca: Issued,
    common_name: str,
    purpose: x509.ObjectIdentifier,
    valid_for: dt.timedelta,
    alt_names: list[x509.GeneralName],
) -> Issued:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the authority's key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return _signed(builder, key, ca_key)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
    valid_for: dt.timedelta,
) -> x509.CertificateBuilder:
    if valid_for <= dt.timedelta(0):
        raise ValueError("valid_for must be positive")
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + valid_for)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _signed(
    builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
) -> Issued:
    certificate = builder.sign(signer, hashes.SHA256())
    return Issued(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
    )
