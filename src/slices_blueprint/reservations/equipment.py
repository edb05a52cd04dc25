"""Equipment admins register for booking: add, list, hide or show, change attributes."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.errors import Conflict
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import get_or_404
from slices_blueprint.events.service import record
from slices_blueprint.reservations.models import Equipment
from slices_blueprint.reservations.schemas import EquipmentCreate, EquipmentOut, EquipmentPatch

ID_TYPE = "equipment"


def equipment_out(item: Equipment, site: str) -> EquipmentOut:
    return EquipmentOut(id=format_id(ID_TYPE, site, item.id), kind=item.kind, name=item.name, site=item.site,
                        attributes=item.attributes, hidden=item.hidden, created_at=item.created_at)


async def list_equipment(session: AsyncSession, *, include_hidden: bool = False,
                         kind: str | None = None) -> list[Equipment]:
    query = select(Equipment).order_by(Equipment.kind, Equipment.name)
    if not include_hidden:
        query = query.where(Equipment.hidden.is_(False))
    if kind:
        query = query.where(Equipment.kind == kind)
    return list(await session.scalars(query))


async def add(session: AsyncSession, body: EquipmentCreate, site: str, actor: str) -> Equipment:
    """Register an item (its name unique at the site: 409 otherwise)."""
    item = Equipment(kind=body.kind, name=body.name, site=body.site or site, attributes=body.attributes,
                     hidden=body.hidden, created_by=actor)
    session.add(item)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"equipment named {body.name!r} exists already") from None
    await record(session, actor=actor, action="equipment.add", outcome="ok", resource_id=item.id,
                 name=item.name, kind=item.kind)
    return item


async def get(session: AsyncSession, equipment_id: uuid.UUID) -> Equipment:
    return await get_or_404(session, Equipment, equipment_id, "equipment")


async def by_name(session: AsyncSession, name: str) -> Equipment | None:
    return await session.scalar(select(Equipment).where(Equipment.name == name))


async def update(session: AsyncSession, item: Equipment, patch: EquipmentPatch, actor: str) -> Equipment:
    """Hide or show an item (hidden: no new bookings; reservations holding it stay), or
    replace its attributes."""
    changes = patch.model_dump(exclude_none=True)
    for field, value in changes.items():
        setattr(item, field, value)
    await record(session, actor=actor, action="equipment.update", outcome="ok", resource_id=item.id,
                 name=item.name, changes=sorted(changes))
    return item
