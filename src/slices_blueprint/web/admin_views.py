"""Credentials (the user's own), the catalog (admins hide entries, sync), hosts (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.catalog import service as catalog
from slices_blueprint.catalog.flows import sync_from_provider
from slices_blueprint.core.config import Settings
from slices_blueprint.core.deps import SessionDep, SettingsDep
from slices_blueprint.core.errors import Invalid, NotFound
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.routing import page_router
from slices_blueprint.credentials import service as credentials
from slices_blueprint.events.models import Event
from slices_blueprint.hosts import service as hosts
from slices_blueprint.identity.caller import Caller
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.registry import credential_driver, credential_kinds, enabled_types
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.service import resource_out
from slices_blueprint.web.deps import UI, CsrfChecked, FormRejected, UserDep, redirect, render

router = page_router(UI)


def _owner(caller: Caller) -> str:
    assert caller.user is not None  # the session's user token names a user
    return caller.user.id


async def _credentials_context(db: AsyncSession, settings: Settings, caller: Caller) -> dict:
    rows = {c.kind: c for c in await credentials.list_own(db, _owner(caller))}
    kinds = credential_kinds()
    return {"kinds": kinds, "stored": rows, "site_has": {k: d.site_configured(settings) for k, d in kinds.items()}}


@router.get("/credentials", response_class=HTMLResponse)
async def credentials_page(request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """Which credentials are stored and whether they worked; never their content."""
    return render(request, "credentials.html", errors={}, **await _credentials_context(db, settings, caller))


@router.post("/credentials/{kind}", dependencies=[CsrfChecked])
async def upload_credential(
    kind: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep,
    file: Annotated[UploadFile | None, File()] = None, selected: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Check the uploaded file with its provider, then store it (replacing the old one)."""
    credentials.flavor_type_of(kind)
    content = await file.read(credentials.MAX_CREDENTIAL_BYTES + 1) if file else b""
    try:
        stored = await credentials.store(db, settings, _owner(caller), kind, content, selected.strip() or None)
    except Invalid as exc:
        raise FormRejected(request, "credentials.html", await _credentials_context(db, settings, caller), {kind: exc.detail}) from exc
    entry = f" (using {stored.selected})" if stored.selected else ""
    return redirect(request, f"{UI}/credentials", f"{credential_driver(kind).credential_label} checked and stored{entry}.")


@router.post("/credentials/{kind}/delete", dependencies=[CsrfChecked])
async def delete_credential(kind: str, request: Request, db: SessionDep, caller: UserDep) -> RedirectResponse:
    credentials.flavor_type_of(kind)
    await credentials.remove(db, _owner(caller), kind)
    return redirect(request, f"{UI}/credentials", f"{credential_driver(kind).credential_label} deleted.")


@router.get("/catalog", response_class=HTMLResponse)
async def catalog_page(request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """Images and flavors; admins also see hidden entries and the last syncs."""
    types = enabled_types(settings)
    syncs = await db.scalars(select(Event).where(Event.action == "catalog.sync").order_by(Event.id.desc()).limit(5)) if caller.is_admin else []
    return render(request, "catalog.html", caller=caller, types=types, site=settings.site_id, syncs=list(syncs),
                  flavors=await catalog.list_flavors(db, types, include_hidden=caller.is_admin),
                  images=await catalog.list_images(db, types, include_hidden=caller.is_admin))


@router.post("/catalog/{what}/{entry_id}/{visibility}", dependencies=[CsrfChecked])
async def set_visibility(what: str, entry_id: str, visibility: str, request: Request, db: SessionDep, caller: UserDep) -> RedirectResponse:
    """Hide or show a flavor or image (admins)."""
    admin = caller.require_admin()
    getters = {"flavor": catalog.get_flavor, "image": catalog.get_image}
    if what not in getters or visibility not in ("hide", "show"):
        raise NotFound("no such catalog action")
    entry = await getters[what](db, path_id(entry_id, what))
    await catalog.set_hidden(db, entry, visibility == "hide", admin.id, what)
    return redirect(request, f"{UI}/catalog", f"{entry.friendly_name} is now {'hidden' if entry.hidden else 'shown'}.")


@router.post("/catalog/sync", dependencies=[CsrfChecked])
async def sync(request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep, flavor_type: Annotated[str, Form()] = "") -> RedirectResponse:
    """Import a provider's catalog, as the API's sync does (admins)."""
    admin = caller.require_admin()
    if flavor_type not in enabled_types(settings):
        raise Invalid(f"{flavor_type!r} is not offered by this site")
    try:
        cluster_id, report = await sync_from_provider(db, settings, flavor_type, admin.id, admin.id)
    except ProviderError as exc:
        raise Invalid(f"catalog sync failed: {exc}") from exc
    counts = f"{len(report.added)} added, {len(report.updated)} updated, {len(report.hidden)} hidden"
    return redirect(request, f"{UI}/catalog", f"Synced {flavor_type} ({cluster_id}): {counts}.")


@router.get("/hosts", response_class=HTMLResponse)
async def hosts_page(request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep) -> HTMLResponse:
    """MicroVM hosts: capacity, heartbeats, VMs (admins)."""
    caller.require_admin()
    placed = await hosts.resources_on_hosts(db)
    ids = [p.id for on_host in placed.values() for p in on_host]
    found = {r.id: r for r in await db.scalars(select(ComputeResource).where(ComputeResource.id.in_(ids)))}
    rows = [(hosts.host_out(h, settings.site_id),
             [resource_out(found[p.id], settings.site_id) for p in placed.get(h.id, [])])
            for h in await hosts.list_hosts(db)]
    return render(request, "hosts.html", hosts=rows)


@router.post("/hosts/{host_id}/{action}", dependencies=[CsrfChecked])
async def host_action(host_id: str, action: str, request: Request, db: SessionDep, caller: UserDep) -> RedirectResponse:
    """Drain a host (keeps its VMs, takes no new ones) or make it active again (admins)."""
    caller.require_admin()
    statuses = {"drain": hosts.DRAINING, "activate": hosts.ACTIVE}
    if action not in statuses:
        raise NotFound(f"no host action {action!r}")
    host = await hosts.set_status(db, path_id(host_id, "host"), statuses[action])
    return redirect(request, f"{UI}/hosts", f"{host.name} is now {host.status}.")
