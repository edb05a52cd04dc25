"""Passing the ETSI GS QKD 014 calls of a device node's SAEs on to the site's real device.

A device node's KME is ours (the experiment's CA, its SAEs' certificates); behind it, the
service calls the device's own ETSI 014 endpoint as the site's SAE, with the site's client
certificate, and maps SAE_IDs both ways: the device knows only the site's SAE at each device,
the experimenter only their own SAEs.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx
import structlog

from slices_blueprint.core.config import QkdDevice

log = structlog.get_logger(__name__)
TIMEOUT_SECONDS = 10.0


class DeviceError(Exception):
    """The device refused or could not be reached: its status (or 503) and message."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []


@functools.lru_cache(maxsize=32)
def _tls(cert: str, key: str, ca: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def call_device(name: str, device: QkdDevice, method: str, path: str, *,
                      json: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ETSI 014 call to ``device`` (``path`` below ``/api/v1/keys/``); its JSON answer, or
    :class:`DeviceError` with the device's status and message."""
    context = _tls(str(device.client_cert), str(device.client_key), str(device.ca_cert))
    url = f"{device.url.rstrip('/')}/api/v1/keys/{path}"
    try:
        async with httpx.AsyncClient(verify=context, timeout=TIMEOUT_SECONDS) as client:
            answer = await client.request(method, url, json=json)
    except httpx.HTTPError as exc:
        log.warning("qkd.device.unreachable", device=name, error=exc.__class__.__name__)
        raise DeviceError(503, f"QKD device {name} cannot be reached ({exc.__class__.__name__})") from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200:
        log.info("qkd.device.refused", device=name, status=answer.status_code)
        raise DeviceError(answer.status_code if answer.status_code in (400, 401, 503) else 503,
                          f"QKD device {name}: {body.get('message') or f'HTTP {answer.status_code}'}",
                          body.get("details") if isinstance(body.get("details"), list) else None)
    return body
