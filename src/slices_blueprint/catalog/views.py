"""BI routes for flavors and disk images: reads for any valid token, writes for admins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from slices_blueprint.catalog import service
from slices_blueprint.catalog.cache import answer
from slices_blueprint.catalog.flows import sync_from_provider
from slices_blueprint.catalog.schemas import (
    CatalogEntryPatch,
    DiskImageCreate,
    DiskImageOut,
    FlavorCreate,
    FlavorOut,
    SyncRequest,
    SyncResult,
)
from slices_blueprint.core.deps import (
    API_PREFIX,
    BI_PREFIX,
    DatabaseDep,
    SessionDep,
    SettingsDep,
    read_only,
)
from slices_blueprint.core.errors import BODY_PROBLEMS, Invalid, problem_responses
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.responses import JSON, json_answer, model_json
from slices_blueprint.core.routing import api_router
from slices_blueprint.events.service import record
from slices_blueprint.identity.deps import CallerDep, ReadingCallerDep
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import enabled_types

router = api_router(BI_PREFIX, "catalog")
admin_router = api_router(f"{API_PREFIX}/catalog", "catalog")


@dataclass(frozen=True)
class CatalogKind:
    """One kind of catalog entry and how the generic routes handle it."""

    path: str
    id_type: str
    label: str
    create_schema: type[BaseModel]
    out_schema: type[BaseModel]
    listing: Callable[..., Awaitable[list[Any]]]
    creating: Callable[..., Awaitable[Any]]
    getting: Callable[..., Awaitable[Any]]
    out: Callable[[Any, str], BaseModel]


KINDS = [
    CatalogKind("/flavors", "flavor", "flavor", FlavorCreate, FlavorOut, service.list_flavors,
                service.create_flavor, service.get_flavor, service.flavor_out),
    CatalogKind("/disk-images", "image", "image", DiskImageCreate, DiskImageOut, service.list_images,
                service.create_image, service.get_image, service.image_out),
]


def _routes(kind: CatalogKind) -> None:
    """List and get for any valid token; create and hide/show for admins."""

    async def list_entries(caller: ReadingCallerDep, db: DatabaseDep, settings: SettingsDep,
                           include_hidden: bool = False) -> Response:
        offered, hidden = enabled_types(settings), include_hidden and caller.is_admin

        async def render() -> bytes:
            async with db.read_session() as session:
                rows = await kind.listing(session, offered, hidden)
            return model_json([kind.out(row, settings.site_id) for row in rows], kind.out_schema)

        # no query and no serializing while the process keeps the catalog
        return Response(await answer(db, (kind.path, tuple(offered), hidden), render), media_type=JSON)

    async def create_entry(body: BaseModel, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> Any:
        admin = caller.require_admin()
        row = await kind.creating(session, body)
        await record(session, actor=admin.id, action=f"catalog.{kind.label}_create", outcome="ok", name=row.friendly_name)
        return kind.out(row, settings.site_id)

    async def get_entry(entry_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> Response:
        offered = None if caller.is_admin else enabled_types(settings)  # hidden: as if missing
        row = await kind.getting(session, path_id(entry_id, kind.id_type), offered)
        return json_answer(kind.out(row, settings.site_id))

    async def patch_entry(entry_id: str, body: CatalogEntryPatch, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> Any:
        admin = caller.require_admin()
        row = await kind.getting(session, path_id(entry_id, kind.id_type))
        await service.set_hidden(session, row, body.hidden, admin.id, kind.label)
        return kind.out(row, settings.site_id)

    create_entry.__annotations__["body"] = kind.create_schema  # the concrete body schema
    out = kind.out_schema
    router.add_api_route(kind.path, list_entries, methods=["GET"], response_model=list[out], summary=f"List {kind.label}s")  # type: ignore[valid-type]
    router.add_api_route(kind.path, create_entry, methods=["POST"], response_model=out, status_code=201, summary=f"Create a {kind.label} (admins)")
    entry = f"{kind.path}/{{entry_id}}"
    router.add_api_route(entry, read_only(get_entry), methods=["GET"], response_model=out,
                         summary=f"Get a {kind.label}", responses=problem_responses(404, 422))
    router.add_api_route(entry, patch_entry, methods=["PATCH"], response_model=out,
                         summary=f"Hide or show a {kind.label} (admins)",
                         responses=problem_responses(403, 404, *BODY_PROBLEMS))


for _kind in KINDS:
    _routes(_kind)


@admin_router.post("/sync", response_model=SyncResult)
async def sync(body: SyncRequest, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> SyncResult:
    """Import a provider's images and flavors (admins): new entries added, changed ones
    updated, vanished ones hidden; answers what changed."""
    admin = caller.require_admin()
    if body.flavor_type not in enabled_types(settings):
        raise Invalid(f"flavor_type: {body.flavor_type!r} is not offered by this site")
    try:
        cluster_id, report = await sync_from_provider(session, settings, body.flavor_type, admin.id, admin.id)
    except ProviderError as exc:
        raise Invalid(f"catalog sync failed: {exc}") from exc
    return SyncResult(flavor_type=body.flavor_type, cluster_id=cluster_id, added=report.added,
                      updated=report.updated, hidden=report.hidden, unchanged=len(report.unchanged))
