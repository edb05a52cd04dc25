"""BI routes for flavors and disk images: reads for any valid token, writes for admins."""

from __future__ import annotations

from fastapi import APIRouter

from slices_blueprint.catalog import service
from slices_blueprint.catalog.schemas import (
    CatalogEntryPatch,
    DiskImageCreate,
    DiskImageOut,
    FlavorCreate,
    FlavorOut,
)
from slices_blueprint.core.deps import BI_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.ids import path_id
from slices_blueprint.events.service import record
from slices_blueprint.identity.deps import CallerDep
from slices_blueprint.providers.registry import enabled_types

router = APIRouter(prefix=BI_PREFIX, tags=["catalog"])


@router.get("/flavors", response_model=list[FlavorOut])
async def list_flavors(
    caller: CallerDep, session: SessionDep, settings: SettingsDep, include_hidden: bool = False
) -> list[FlavorOut]:
    """Flavors this site offers (hidden ones only for admins who ask)."""
    rows = await service.list_flavors(session, enabled_types(settings), include_hidden and caller.is_admin)
    return [service.flavor_out(f, settings.site_id) for f in rows]


@router.post("/flavors", response_model=FlavorOut, status_code=201)
async def create_flavor(
    body: FlavorCreate, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> FlavorOut:
    admin = caller.require_admin()
    flavor = await service.create_flavor(session, body)
    await record(session, actor=admin.id, action="catalog.flavor_create", outcome="ok", name=flavor.friendly_name)
    return service.flavor_out(flavor, settings.site_id)


@router.get("/flavors/{flavor_id}", response_model=FlavorOut)
async def get_flavor(flavor_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> FlavorOut:
    flavor = await service.get_flavor(session, path_id(flavor_id, "flavor"))
    return service.flavor_out(flavor, settings.site_id)


@router.patch("/flavors/{flavor_id}", response_model=FlavorOut)
async def patch_flavor(
    flavor_id: str, body: CatalogEntryPatch, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> FlavorOut:
    """Hide or show a flavor (admins)."""
    admin = caller.require_admin()
    flavor = await service.get_flavor(session, path_id(flavor_id, "flavor"))
    flavor.hidden = body.hidden
    await record(session, actor=admin.id, action="catalog.flavor_update", outcome="ok", name=flavor.friendly_name, hidden=body.hidden)
    return service.flavor_out(flavor, settings.site_id)


@router.get("/disk-images", response_model=list[DiskImageOut])
async def list_images(
    caller: CallerDep, session: SessionDep, settings: SettingsDep, include_hidden: bool = False
) -> list[DiskImageOut]:
    rows = await service.list_images(session, enabled_types(settings), include_hidden and caller.is_admin)
    return [service.image_out(i, settings.site_id) for i in rows]


@router.post("/disk-images", response_model=DiskImageOut, status_code=201)
async def create_image(
    body: DiskImageCreate, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> DiskImageOut:
    admin = caller.require_admin()
    image = await service.create_image(session, body)
    await record(session, actor=admin.id, action="catalog.image_create", outcome="ok", name=image.friendly_name)
    return service.image_out(image, settings.site_id)


@router.get("/disk-images/{image_id}", response_model=DiskImageOut)
async def get_image(image_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> DiskImageOut:
    image = await service.get_image(session, path_id(image_id, "image"))
    return service.image_out(image, settings.site_id)


@router.patch("/disk-images/{image_id}", response_model=DiskImageOut)
async def patch_image(
    image_id: str, body: CatalogEntryPatch, caller: CallerDep, session: SessionDep, settings: SettingsDep
) -> DiskImageOut:
    admin = caller.require_admin()
    image = await service.get_image(session, path_id(image_id, "image"))
    image.hidden = body.hidden
    await record(session, actor=admin.id, action="catalog.image_update", outcome="ok", name=image.friendly_name, hidden=body.hidden)
    return service.image_out(image, settings.site_id)


