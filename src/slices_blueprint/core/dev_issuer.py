"""The local development issuer: signs tokens this service trusts only in dev mode.

Its key (EC P-256) lives in ``data_dir/dev-issuer.jwk``. The issuer URL is
``{service_url}/dev/issuer``; its discovery document and JWKS are served by the app only
while dev mode is on, and the verifier knows its key only then.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from slices_blueprint.core.config import Settings
from slices_blueprint.core.ids import format_id, name_uuid

DEV_KID = "dev-1"
DEV_AUTHORITY = "dev.local"


def load_dev_key(settings: Settings) -> ECKey:
    """The dev issuer's private key, created on first use (file mode 0600)."""
    path = settings.data_dir / "dev-issuer.jwk"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ECKey.generate_key("P-256", parameters={"kid": DEV_KID}, private=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(key.as_dict(private=True), f)
        except FileExistsError:
            pass
    return ECKey.import_key(json.loads(path.read_text()))


def dev_keyset(settings: Settings) -> KeySet:
    return KeySet([load_dev_key(settings)])


def dev_ids(user: str, project: str, experiment: str | None) -> dict[str, str]:
    """SLICES-shaped ids for dev-mode names (stable: the same name gives the same id)."""
    ids = {
        "user": format_id("user", DEV_AUTHORITY, name_uuid(f"user:{user}")),
        "project": format_id("proj", DEV_AUTHORITY, name_uuid(f"proj:{project}")),
    }
    if experiment:
        ids["experiment"] = format_id("exp", DEV_AUTHORITY, name_uuid(f"exp:{project}/{experiment}"))
    return ids


def mint_dev_token(
    settings: Settings,
    *,
    user: str,
    project: str,
    experiment: str | None = None,
    lifetime_s: int = 3600,
    experiment_days: int = 7,
    ssh_key: str | None = None,
) -> str:
    """A token from the dev issuer: an experiment JWT when ``experiment`` is given, else a
    user id-token. Experiment tokens carry ``expires_at`` (the experiment's expiry)."""
    ids = dev_ids(user, project, experiment)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.dev_issuer,
        "aud": settings.service_url,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
    }
    if experiment:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=experiment_days)
        claims |= {
            "sub": ids["experiment"],
            "proj": ids["project"],
            "experiment_name": experiment,
            "project_name": project,
            "expires_at": expires.isoformat(),
            "user": ids["user"],
        }
    else:
        claims |= {
            "sub": ids["user"],
            "preferred_username": user,
            "username": user,
            "email": f"{user}@{DEV_AUTHORITY}",
            "first_name": user.capitalize(),
            "last_name": "(dev)",
            "project_urns": [ids["project"]],
            "project_names": {ids["project"]: project},
        }
        if ssh_key:
            claims["public_ssh_key"] = ssh_key
    return jwt.encode({"alg": "ES256", "kid": DEV_KID, "typ": "JWT"}, claims, load_dev_key(settings))
