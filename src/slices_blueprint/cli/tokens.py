"""What the CLI reads in a token for its messages (unverified: the service verifies tokens;
nothing here grants anything)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

DEV_ISSUER_SUFFIX = "/dev/issuer"


def claims(token: str | None) -> dict[str, Any]:
    """The token's claims, or ``{}`` when it is not a readable JWT."""
    try:
        payload = (token or "").split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def renewal_hint(token: str | None) -> str:
    """How to get a new token like ``token`` (an expired one)."""
    found = claims(token)
    experiment = found.get("experiment_name")
    if str(found.get("iss", "")).endswith(DEV_ISSUER_SUFFIX):
        flags = f" --experiment {experiment}" if experiment else ""
        if found.get("project_name") not in (None, "demo"):
            flags += f" --project {found['project_name']}"
        return (f"get a new one: export SLICES_BLUEPRINT_TOKEN=$(slices-blueprint dev token{flags})")
    return f"get a new one: slices experiment jwt {experiment or '<experiment>'}"
