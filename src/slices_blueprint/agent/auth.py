"""The agent's bearer token: one per host, compared in constant time; the API is never open.

Where the token comes from, first match wins: ``SLICES_AGENT_TOKEN``; the token the service
issued at registration (``data_dir/token``, mode 0600); else one is generated there, and
its path (never its value) is logged for the operator to hand to the service.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import structlog
from fastapi import HTTPException, Request, status

from slices_blueprint.agent.config import AgentSettings

log = structlog.get_logger(__name__)


class TokenKeeper:
    def __init__(self, settings: AgentSettings) -> None:
        self.path = settings.data_dir / "token"
        self._fixed = settings.token.get_secret_value() if settings.token else None
        if self._fixed is None and not self.path.exists():
            self.store(secrets.token_urlsafe(32))
            log.info("agent.token_generated", path=str(self.path))

    @property
    def token(self) -> str:
        return self._fixed or self.path.read_text().strip()

    def store(self, token: str) -> None:
        """Keep a token issued by the service (written 0600, atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        os.replace(tmp, self.path)

    def matches(self, presented: str) -> bool:
        digest = hashlib.sha256
        return hmac.compare_digest(digest(presented.encode()).digest(),
                                   digest(self.token.encode()).digest())


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless ``Authorization: Bearer <the host token>``."""
    keeper: TokenKeeper = request.app.state.tokens
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented or not keeper.matches(presented.strip()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid agent bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
