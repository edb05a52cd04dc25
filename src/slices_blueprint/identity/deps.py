"""The ``Caller`` dependency: who is calling, with which experiment, and may they."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.deps import SessionDep
from slices_blueprint.core.errors import Forbidden, Unauthorized
from slices_blueprint.core.security import TokenVerifier, VerifiedToken
from slices_blueprint.identity import service
from slices_blueprint.identity.models import Experiment, User

bearer = HTTPBearer(auto_error=False, description="A SLICES user id-token or experiment JWT")


@dataclass
class Caller:
    """The verified caller of one request."""

    kind: str  # "user" | "experiment"
    token: VerifiedToken
    user: User | None = None
    experiment: Experiment | None = None
    is_admin: bool = False
    project_ids: set[str] = field(default_factory=set)

    @property
    def actor(self) -> str:
        """Who to name in the audit trail."""
        if self.user:
            return self.user.id
        return str(self.token.claims.get("user") or self.token.subject)

    def require_experiment(self) -> Experiment:
        if self.experiment is None:
            raise Forbidden("this operation needs an experiment token (slices experiment jwt <exp>)")
        return self.experiment

    def require_admin(self) -> User:
        if not (self.user and self.is_admin):
            raise Forbidden("this operation is for site administrators")
        return self.user


def verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


def is_admin(request: Request, user_id: str) -> bool:
    return user_id in request.app.state.admin_ids


async def caller_from_token(request: Request, session: AsyncSession, token_text: str) -> Caller:
    """Verify a token and upsert who it names (used by the API and the web UI)."""
    token = await verifier(request).verify(token_text)
    if token.kind == "experiment":
        experiment = await service.upsert_experiment(session, token)
        return Caller(kind="experiment", token=token, experiment=experiment, project_ids={experiment.project_id})
    user = await service.upsert_user(session, token)
    projects = token.claims.get("project_urns") or []
    return Caller(
        kind="user",
        token=token,
        user=user,
        is_admin=is_admin(request, user.id),
        project_ids={str(p) for p in projects} if isinstance(projects, list) else set(),
    )


async def get_caller(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller named by the ``Authorization: Bearer`` token."""
    if not credentials:
        raise Unauthorized("a bearer token is required (Authorization: Bearer <jwt>)")
    return await caller_from_token(request, session, credentials.credentials)


CallerDep = Annotated[Caller, Depends(get_caller)]
