"""Upload, replace, list and delete one's own provider credentials (user token)."""

from __future__ import annotations

from fastapi import Response

from slices_blueprint.core.deps import API_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import Forbidden
from slices_blueprint.core.routing import api_router
from slices_blueprint.credentials import service
from slices_blueprint.credentials.schemas import CredentialOut, CredentialUpload
from slices_blueprint.identity.deps import Caller, CallerDep

router = api_router(f"{API_PREFIX}/credentials", "credentials")


def _owner(caller: Caller) -> str:
    if caller.user is None:
        raise Forbidden("credentials belong to a user: use your user id-token")
    return caller.user.id


@router.get("", response_model=list[CredentialOut])
async def list_credentials(caller: CallerDep, session: SessionDep) -> list[CredentialOut]:
    """Which credentials you stored and whether they worked when last checked."""
    rows = await service.list_own(session, _owner(caller))
    return [CredentialOut.model_validate(r, from_attributes=True) for r in rows]


@router.put("/{kind}", response_model=CredentialOut)
async def put_credential(
    kind: str, body: CredentialUpload, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> CredentialOut:
    """Check and store (or replace) your credential of ``kind``: a provider's
    ``credential_kind`` (an unknown kind is 404, naming the known ones)."""
    credential = await service.store(session, settings, _owner(caller), kind, body.content.encode(), body.selected)
    await session.flush()
    return CredentialOut.model_validate(credential, from_attributes=True)


@router.delete("/{kind}", status_code=204)
async def delete_credential(kind: str, caller: CallerDep, session: SessionDep) -> Response:
    service.flavor_type_of(kind)
    await service.remove(session, _owner(caller), kind)
    return Response(status_code=204)
