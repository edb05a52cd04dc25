"""The ``Caller`` dependency: the verified caller of a request (see ``identity.caller``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.deps import SessionDep
from slices_blueprint.core.errors import Unauthorized
from slices_blueprint.core.security import TokenVerifier
from slices_blueprint.identity import service
from slices_blueprint.identity.caller import Caller

bearer = HTTPBearer(auto_error=False, description="A SLICES user id-token or experiment JWT")


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
