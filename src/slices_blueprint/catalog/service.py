"""Reading and writing flavors and disk images."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog.cache import entries
from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.catalog.schemas import (
    DiskImageCreate,
    DiskImageOut,
    FlavorCreate,
    FlavorOut,
)
from slices_blueprint.core.errors import Conflict, NotFound
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import get_or_404
from slices_blueprint.events.service import record

EntryT = TypeVar("EntryT", Flavor, DiskImage)


def flavor_out(flavor: Flavor, site: str) -> FlavorOut:
    data = {k: getattr(flavor, k) for k in FlavorOut.model_fields if k != "id"}
    return FlavorOut(id=format_id("flavor", site, flavor.id), **data)


def image_out(image: DiskImage, site: str) -> DiskImageOut:
    data = {k: getattr(image, k) for k in DiskImageOut.model_fields if k != "id"}
    return DiskImageOut(id=format_id("image", site, image.id), **data)


async def list_flavors(
    session: AsyncSession, flavor_types: list[str], include_hidden: bool = False
) -> list[Flavor]:
    query = select(Flavor).where(Flavor.flavor_type.in_(flavor_types)).order_by(
        Flavor.flavor_type, Flavor.vcpus, Flavor.ram_mib, Flavor.friendly_name
    )
    if not include_hidden:
        query = query.where(Flavor.hidden.is_(False))
    return await entries(session, (Flavor, tuple(flavor_types), include_hidden), query)


async def list_images(
    session: AsyncSession, flavor_types: list[str], include_hidden: bool = False
) -> list[DiskImage]:
    query = select(DiskImage).where(DiskImage.flavor_type.in_(flavor_types)).order_by(
        DiskImage.flavor_type, DiskImage.friendly_name
    )
    if not include_hidden:
        query = query.where(DiskImage.hidden.is_(False))
    return await entries(session, (DiskImage, tuple(flavor_types), include_hidden), query)


async def _add(session: AsyncSession, row: Flavor | DiskImage, what: str) -> None:
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(f"a {what} with the same type, cluster and provider reference exists") from exc


async def create_flavor(session: AsyncSession, data: FlavorCreate) -> Flavor:
    flavor = Flavor(**data.model_dump(), source="manual", extra={})
    await _add(session, flavor, "flavor")
    return flavor


async def create_image(session: AsyncSession, data: DiskImageCreate) -> DiskImage:
    image = DiskImage(**data.model_dump(), source="manual")
    await _add(session, image, "disk image")
    return image


async def get_flavor(
    session: AsyncSession, flavor_id: uuid.UUID, offered_types: list[str] | None = None
) -> Flavor:
    """A flavor; with ``offered_types`` (non-admins), hidden ones are 404 as if missing."""
    return await _get(session, Flavor, flavor_id, "flavor", offered_types)


async def get_image(
    session: AsyncSession, image_id: uuid.UUID, offered_types: list[str] | None = None
) -> DiskImage:
    """A disk image; with ``offered_types`` (non-admins), hidden ones are 404 as if missing."""
    return await _get(session, DiskImage, image_id, "disk image", offered_types)


async def _get(session: AsyncSession, model: type[EntryT], key: uuid.UUID, what: str,
               offered_types: list[str] | None) -> EntryT:
    entry = await get_or_404(session, model, key, what)
    if offered_types is not None and (entry.hidden or entry.flavor_type not in offered_types):
        raise NotFound(f"no such {what}")
    return entry


async def set_hidden(session: AsyncSession, entry: Flavor | DiskImage, hidden: bool, actor: str, what: str) -> None:
    """Hide or show an entry by an admin's decision, which later catalog syncs respect."""
    entry.hidden = entry.hidden_by_admin = hidden
    await record(session, actor=actor, action=f"catalog.{what}_update", outcome="ok", name=entry.friendly_name, hidden=hidden)
