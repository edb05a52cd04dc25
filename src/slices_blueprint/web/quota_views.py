"""Quotas in the UI: admins read every project's usage and edit its quota (users see
theirs on the dashboard)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from slices_blueprint.core.deps import SessionDep, SettingsDep
from slices_blueprint.core.errors import Invalid
from slices_blueprint.core.routing import page_router
from slices_blueprint.providers.registry import enabled_types
from slices_blueprint.quotas import service as quotas
from slices_blueprint.quotas.schemas import QuotaOut, QuotaUpdate
from slices_blueprint.web.deps import UI, CsrfChecked, UserDep, redirect, render

router = page_router(UI)
TOTALS = {"instances": "Instances", "vcpus": "vCPUs", "ram_mib": "RAM (MiB)"}
UNLIMITED = "unlimited"


def quota_rows(quota: QuotaOut) -> list[tuple[str, int, int | None]]:
    """(label, used, allowed) per limit: the totals, then instances per flavor type."""
    limits, usage = quota.limits, quota.usage
    rows = [(label, getattr(usage, name), getattr(limits, name)) for name, label in TOTALS.items()]
    types = sorted({*limits.flavor_types, *usage.flavor_types})
    return rows + [
        (f"Instances of {t}", usage.flavor_types.get(t, 0), limits.flavor_types.get(t))
        for t in types
    ]


def shown(override: dict, name: str) -> str:
    """A form field's value: empty for the site default, ``unlimited`` for null."""
    if name not in override:
        return ""
    return UNLIMITED if override[name] is None else str(override[name])


def parsed(field: str, text: str) -> tuple[bool, int | None]:
    """(given, limit) of one form field: empty is the site default, ``unlimited`` is null."""
    text = text.strip().lower()
    if not text:
        return False, None
    if text == UNLIMITED:
        return True, None
    if not text.isdigit():
        raise Invalid(
            f"{field}: give a whole number, '{UNLIMITED}', or nothing for the site default"
        )
    return True, int(text)


@router.get("/quotas", response_class=HTMLResponse)
async def quotas_page(
    request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep
) -> HTMLResponse:
    """Every known project's limits and usage, each with a form to change its quota (admins)."""
    caller.require_admin()
    names = await quotas.known_projects(db)
    rows = [await quotas.quota_out(db, settings, p) for p in names]
    return render(
        request,
        "quotas.html",
        quotas=rows,
        names=names,
        totals=TOTALS,
        types=enabled_types(settings),
        site=quotas.site_limits(settings),
        rows_of=quota_rows,
        shown=shown,
    )


@router.post("/quotas/{project_id}", dependencies=[CsrfChecked])
async def set_quota(
    project_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep
) -> RedirectResponse:
    """Replace a project's quota override from the form (admins)."""
    admin = caller.require_admin()
    form = await request.form()
    values: dict = {}
    for name in TOTALS:
        given, limit = parsed(name, str(form.get(name, "")))
        if given:
            values[name] = limit
    per_type = {}
    for flavor_type in enabled_types(settings):
        given, limit = parsed(
            f"instances of {flavor_type}", str(form.get(f"type:{flavor_type}", ""))
        )
        if given:
            per_type[flavor_type] = limit
    if per_type:
        values["flavor_types"] = per_type
    await quotas.set_override(db, project_id, QuotaUpdate.model_validate(values), admin.id)
    return redirect(request, f"{UI}/quotas", f"Quota of {project_id} saved.")
