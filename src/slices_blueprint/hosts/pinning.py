"""The agents' TLS certificates, pinned: each agent makes a self-signed certificate, hands it
over when it enrols, and the service then trusts exactly that certificate for that host.

The check is OpenSSL's: the pinned certificate is the only trust anchor of the host's TLS
context, so a peer without its private key (another certificate at the pinned URL, a
man in the middle) fails the handshake before any request, bearer token included, is sent.
Host names are not checked: the certificate, not DNS, names the host.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from slices_blueprint.core.errors import Invalid


def fingerprint(cert_pem: str) -> str:
    """The certificate's SHA-256 fingerprint (hex, lower case); 422 if it is not one."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as exc:
        raise Invalid("cert_pem is not a PEM X.509 certificate") from exc
    return certificate.fingerprint(hashes.SHA256()).hex()


@lru_cache(maxsize=256)
def pinned_context(cert_pem: str) -> ssl.SSLContext:
    """A client TLS context that accepts only ``cert_pem`` (TLS 1.2 or later)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=cert_pem)
    return context


def is_pin_mismatch(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a refused peer certificate."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
