"""The ``Caller`` dependency: the verified caller of a request (see ``identity.caller``)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.deps import SessionDep
from slices_blueprint.core.errors import Unauthorized
from slices_blueprint.core.models import detached_copy
from slices_blueprint.core.security import TokenKind, TokenVerifier, VerifiedToken
from slices_blueprint.core.ttl_cache import TtlCache, token_key
from slices_blueprint.identity import service
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment, User

IDENTITY_SECONDS = 60  # a token's recorded user or experiment is re-checked at least this often
IDENTITY_MAX = 10_000


class _Bearer(HTTPBearer):
    """The ``Authorization: Bearer`` token, unverified; 401 (our problem answer) when there is
    none. The API's documented security scheme, and one dependency of a request where a
    scheme and a check were two (FastAPI's cost is per dependency)."""

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        credentials = await super().__call__(request)
        if not credentials:
            raise Unauthorized("a bearer token is required (Authorization: Bearer <jwt>)")
        return credentials.credentials


_SCHEME = {"auto_error": False, "scheme_name": "HTTPBearer",  # the OpenAPI name it always had
           "description": "A SLICES user id-token or experiment JWT"}
bearer = _Bearer(**_SCHEME)


def verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


def is_admin(request: Request, user_id: str) -> bool:
    return user_id in request.app.state.admin_ids


def identity_cache() -> TtlCache[bytes, User | Experiment]:
    """Where an app keeps the rows its callers' tokens were recorded as (``app.state.identities``)."""
    return TtlCache(IDENTITY_MAX)


async def _recorded(request: Request, session: AsyncSession, token_text: str, token: VerifiedToken) -> User | Experiment:
    """The user or experiment ``token`` names, upserted from its claims; remembered per token
    (its hash), from the commit that recorded it until the token expires,
    :data:`IDENTITY_SECONDS` at most: the same token's claims record nothing new, so its later
    requests make no query for it."""
    cache: TtlCache[bytes, User | Experiment] = request.app.state.identities
    key = token_key(token_text)
    known = cache.get(key)
    if known is not None:
        return await session.merge(known, load=False)
    if token.kind == "experiment":
        row: User | Experiment = await service.upsert_experiment(session, token)
    else:
        row = await service.upsert_user(session, token)
    copy, until = detached_copy(row), min(float(token.claims["exp"]), time.time() + IDENTITY_SECONDS)
    # remembered once on record: a request that fails rolls its upsert back
    event.listen(session.sync_session, "after_commit", lambda _: cache.put(key, copy, until), once=True)
    return row


async def identity_from_token(request: Request, session: AsyncSession, token_text: str,
                              expect: TokenKind | None = None) -> tuple[VerifiedToken, User | Experiment]:
    """Verify a token and upsert who it names: the token and the user or experiment row."""
    token = await verifier(request).verify(token_text, expect=expect)
    return token, await _recorded(request, session, token_text, token)


async def caller_from_token(request: Request, session: AsyncSession, token_text: str) -> Caller:
    """Verify a token and upsert who it names (used by the API and the web UI)."""
    token, row = await identity_from_token(request, session, token_text)
    return _caller(request, token, row)


def _caller(request: Request, token: VerifiedToken, row: User | Experiment) -> Caller:
    """The caller of a verified ``token`` recorded as ``row``."""
    if isinstance(row, Experiment):
        return Caller(kind="experiment", token=token, experiment=row, project_ids={row.project_id})
    user = row
    projects = token.claims.get("project_urns") or []
    return Caller(
        kind="user",
        token=token,
        user=user,
        is_admin=is_admin(request, user.id),
        project_ids={str(p) for p in projects} if isinstance(projects, list) else set(),
    )


BearerDep = Annotated[str, Depends(bearer)]


async def get_caller(request: Request, session: SessionDep, token_text: BearerDep) -> Caller:
    """The caller named by the ``Authorization: Bearer`` token."""
    return await caller_from_token(request, session, token_text)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_reading_caller(request: Request, token_text: BearerDep) -> Caller:
    """The caller, as :func:`get_caller` finds it, for a view that never changes the caller's
    row (one reading with no session, or writing other rows in its own): a token verified
    (``TokenVerifier.verify``, every check) whose user or experiment row is remembered
    (:func:`_recorded`) makes no query; its caller holds the remembered copy, belonging to no
    session (read it, never change it). Otherwise the row is recorded as
    :func:`get_caller` does, in a transaction of its own, which remembers it on commit."""
    token = await verifier(request).verify(token_text)
    known = request.app.state.identities.get(token_key(token_text))
    if known is not None:
        return _caller(request, token, known)
    async with request.app.state.db.session() as session:
        return await caller_from_token(request, session, token_text)


class _ReadingCaller(_Bearer):
    """:func:`get_reading_caller` as the security scheme itself: one dependency where the
    token and its caller were two."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        return await get_reading_caller(request, await super().__call__(request))


ReadingCallerDep = Annotated[Caller, Depends(_ReadingCaller(**_SCHEME))]
"""The caller of a view that never changes the caller's row: no query, no session merge."""
