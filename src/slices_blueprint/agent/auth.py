"""The agent's bearer token: one per host, compared in constant time; the API is never open.

Where the token comes from, first match wins: ``SLICES_AGENT_TOKEN``; else
``data_dir/token`` (mode 0600), generated at first start (its path, never its value, is
logged). The agent hands it to the service when it enrols; from then on it is this host's
identity: the service calls the agent with it, and only it may register the host again.
The SHA-256 of the enrolment token used up is kept in ``data_dir/enrolment`` so that a
restart does not present it again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import structlog
from fastapi import HTTPException, Request, status

from slices_blueprint.agent.config import AgentSettings

log = structlog.get_logger(__name__)


class TokenKeeper:
    def __init__(self, settings: AgentSettings) -> None:
        self.path = settings.data_dir / "token"
        self.enrolment_path = settings.data_dir / "enrolment"
        self._fixed = settings.token.get_secret_value() if settings.token else None
        if self._fixed is None and not self.path.exists():
            self.store(secrets.token_urlsafe(32))
            log.info("agent.token_generated", path=str(self.path))

    @property
    def token(self) -> str:
        return self._fixed or self.path.read_text().strip()

    def store(self, token: str) -> None:
        """Keep the host's token (written 0600, atomically)."""
        write_private(self.path, token.encode())

    def enrolment_used(self, enrolment_token: str) -> bool:
        """Whether this host already enrolled with ``enrolment_token``."""
        return self.enrolment_path.exists() and hmac.compare_digest(
            self.enrolment_path.read_text().strip(), _sha256(enrolment_token))

    def record_enrolment(self, enrolment_token: str) -> None:
        write_private(self.enrolment_path, _sha256(enrolment_token).encode())

    def matches(self, presented: str) -> bool:
        digest = hashlib.sha256
        return hmac.compare_digest(digest(presented.encode()).digest(),
                                   digest(self.token.encode()).digest())


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless ``Authorization: Bearer <the host token>``."""
    keeper: TokenKeeper = request.app.state.tokens
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented or not keeper.matches(presented.strip()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid agent bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
