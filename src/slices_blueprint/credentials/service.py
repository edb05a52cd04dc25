"""Storing, checking and using uploaded provider credentials (encrypted at rest).

A credential is checked by its provider before it is stored; a failed check stores nothing
and keeps the previous one. The plaintext exists only in memory, for one check or one task.
A credential asking for what uploads never get (a proxy, a vendor profile, server-side
files, a non-public endpoint: :class:`UnsafeCredential`) is refused before anything is
contacted, with the field and address named.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.errors import Invalid, NotFound
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.credentials.models import Credential
from slices_blueprint.events.service import record
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.endpoints import EndpointPolicy, UnsafeCredential
from slices_blueprint.providers.registry import credential_driver

log = structlog.get_logger(__name__)

MAX_CREDENTIAL_BYTES = 256 * 1024


def flavor_type_of(kind: str) -> str:
    """The flavor type whose driver checks and uses credential ``kind`` (404 if none)."""
    return credential_driver(kind).flavor_type


async def get_own(session: AsyncSession, owner_id: str, kind: str) -> Credential | None:
    return await session.scalar(select(Credential).where(Credential.owner_id == owner_id, Credential.kind == kind))


async def list_own(session: AsyncSession, owner_id: str) -> list[Credential]:
    return list(await session.scalars(select(Credential).where(Credential.owner_id == owner_id).order_by(Credential.kind)))


async def store(
    session: AsyncSession, settings: Settings, owner_id: str, kind: str, plaintext: bytes, selected: str | None
) -> Credential:
    """Check ``plaintext`` with its provider, then store it encrypted (replacing the old one)."""
    driver = credential_driver(kind)
    if not plaintext.strip():
        raise Invalid("the uploaded file is empty")
    if len(plaintext) > MAX_CREDENTIAL_BYTES:
        raise Invalid(f"the uploaded file is larger than {MAX_CREDENTIAL_BYTES // 1024} KiB")
    try:
        selected = await driver.validate_credential(
            plaintext, selected, EndpointPolicy.of(settings))
    except UnsafeCredential as exc:
        # the request's transaction rolls back, so this failure lives in the logs, not the audit trail
        log.warning("credential.refused", owner_id=owner_id, kind=kind, reason=str(exc))
        raise Invalid(f"{kind} credential refused: {exc}") from exc
    except ProviderError as exc:
        log.warning("credential.check_failed", owner_id=owner_id, kind=kind, reason=str(exc))
        raise Invalid(f"{kind} credential does not work: {exc}") from exc
    credential = await get_own(session, owner_id, kind) or Credential(owner_id=owner_id, kind=kind)
    credential.ciphertext = secret_box(settings).encrypt(plaintext)
    credential.selected = selected
    credential.last_checked_at = utcnow()
    credential.last_check_ok = True
    credential.last_check_error = None
    session.add(credential)
    await record(session, actor=owner_id, action="credential.store", outcome="ok", kind=kind, selected=selected)
    return credential


async def remove(session: AsyncSession, owner_id: str, kind: str) -> None:
    credential = await get_own(session, owner_id, kind)
    if credential is None:
        raise NotFound(f"you have no {kind} credential")
    await session.delete(credential)
    await record(session, actor=owner_id, action="credential.delete", outcome="ok", kind=kind)


async def plaintext_for(
    session: AsyncSession, settings: Settings, kind: str | None, owner_id: str | None
) -> tuple[bytes | None, str | None]:
    """The decrypted credential a task on behalf of ``owner_id`` should use, or
    ``(None, None)`` for the operator's site-wide configuration."""
    if kind is None or owner_id is None:
        return None, None
    credential = await get_own(session, owner_id, kind)
    if credential is None:
        return None, None
    return secret_box(settings).decrypt(credential.ciphertext), credential.selected


async def rotate_all(session: AsyncSession, settings: Settings) -> int:
    """Re-encrypt every stored credential with the newest key; returns how many."""
    box = secret_box(settings)
    rows = list(await session.scalars(select(Credential)))
    for row in rows:
        row.ciphertext = box.rotate(row.ciphertext)
    return len(rows)
