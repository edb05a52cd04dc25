"""Reservations in the UI: the week's calendar of equipment and microVM capacity, booking a
free slot from it (a conflict shows what is in the way and the free windows offered), and
the caller's reservations with time left, extend and cancel. The API's service functions do
the work with the same scoping and errors: reading and changing need the user's session (as
the API allows a user token); a booking is for the experiment whose token the session holds,
or project-wide for one of the user's projects."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from slices_blueprint.core.config import Settings
from slices_blueprint.core.deps import SessionDep, SettingsDep
from slices_blueprint.core.errors import ProblemError
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.routing import page_router
from slices_blueprint.identity.caller import Caller
from slices_blueprint.reservations import equipment, service
from slices_blueprint.reservations.schemas import KindCount, ReservationCreate, ReservationExtend
from slices_blueprint.web.deps import (
    UI,
    CsrfChecked,
    FormRejected,
    UserDep,
    experiment_caller,
    redirect,
    render,
)
from slices_blueprint.web.reservation_banner import EXTEND_HOURS, ending_soon
from slices_blueprint.web.reservation_grid import (
    BOOK,
    book_query,
    load_week,
    monday_of,
    next_quarter,
)
from slices_blueprint.web.session import web_session

router = page_router(UI)
Text = Annotated[str, Form()]
EXPERIMENT = "experiment"
# the API's field (first word of its message) -> the form's field
FIELD_OF = {"starts_at": "start", "ends_at": "hours", "hours": "hours", "equipment": "equipment",
            "any_of": "count", "kind": "kind", "count": "count", "vcpus": "vcpus", "ram_mib": "ram_gib",
            "project_id": "owner"}


@dataclass
class BookingForm:
    """The booking form as typed (strings), so a refused one comes back as it was sent."""

    equipment: str = ""
    kind: str = ""
    count: str = "1"
    vcpus: str = ""
    ram_gib: str = ""
    start: str = ""
    hours: str = "3"
    owner: str = EXPERIMENT

    def request(self) -> ReservationCreate:
        """The API request (``FormErrors`` naming the fields at fault)."""
        errors: dict[str, str] = {}
        numbers = {}
        for name in ("count", "vcpus", "ram_gib", "hours"):
            try:
                numbers[name] = float(getattr(self, name) or 0)
            except ValueError:
                errors[name] = "give a number"
        try:
            start = dt.datetime.fromisoformat(self.start)  # as the form's field sends it: UTC
            start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)  # a given offset is kept
        except ValueError:
            errors["start"], start = "give a date and time (UTC)", None
        if errors:
            raise FormErrors(errors)
        try:
            return ReservationCreate(
                equipment=[self.equipment] if self.equipment else [],
                any_of=[KindCount(kind=self.kind, count=int(numbers["count"]))] if self.kind else [],
                vcpus=int(numbers["vcpus"]), ram_mib=int(numbers["ram_gib"] * 1024),
                project_id=None if self.owner == EXPERIMENT else self.owner,
                starts_at=start, hours=numbers["hours"] or None)
        except ValidationError as exc:
            raise FormErrors({FIELD_OF.get(next((str(p) for p in e["loc"] if str(p) in FIELD_OF), ""), "form"):
                              e["msg"].removeprefix("Value error, ") for e in exc.errors()}) from None


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def field_error(detail: str) -> dict[str, str]:
    """An API error message (``starts_at: must not be in the past``) as the form field it concerns."""
    head, sep, rest = detail.partition(":")
    if detail.startswith("give exactly one"):
        return {"hours": detail}
    return {FIELD_OF[head]: rest.strip()} if sep and head in FIELD_OF else {"form": detail}


async def _week_context(db: AsyncSession, settings: Settings, caller: Caller, week: str | None) -> dict[str, Any]:
    now = utcnow()
    grid = await load_week(db, caller, settings.site_id, monday_of(week, now), now)
    rows = await service.list_reservations(db, caller, include_past=False)
    return {"week": grid, "reservations": await service.outs(db, settings.site_id, rows), "book": BOOK,
            "any_start": book_query(next_quarter(now)), "admin": caller.is_admin,
            "banners": await ending_soon(db, settings, caller), "extend_hours": EXTEND_HOURS}


@router.get("/reservations", response_class=HTMLResponse)
async def week_page(request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep,
                    week: Annotated[str | None, Query()] = None) -> HTMLResponse:
    """The week's calendar (``week``: any date in it, default this week) and the caller's reservations."""
    return render(request, "reservations.html", errors={}, **await _week_context(db, settings, caller, week))


async def _form_context(db: AsyncSession, caller: Caller, form: BookingForm) -> dict[str, Any]:
    items = await equipment.list_equipment(db)
    return {"form": form, "items": items, "kinds": sorted({e.kind for e in items}),
            "projects": sorted(caller.project_ids), "conflicts": [], "alternatives": []}


@router.get("/reservations/new", response_class=HTMLResponse)
async def booking_form(request: Request, db: SessionDep, caller: UserDep, equipment: str = "", kind: str = "",
                       count: str = "1", vcpus: str = "", ram_gib: str = "", start: str = "",
                       hours: str = "3", owner: str = "") -> HTMLResponse:
    """The booking form, prefilled from the calendar's slot (item or kind, start)."""
    if not owner:
        owner = EXPERIMENT if web_session(request).get("experiment_token") else min(caller.project_ids, default="")
    form = BookingForm(equipment=equipment, kind=kind, count=count, vcpus=vcpus, ram_gib=ram_gib, hours=hours,
                       start=start or f"{next_quarter(utcnow()):%Y-%m-%dT%H:%M}", owner=owner)
    return render(request, "reservation_form.html", errors={}, **await _form_context(db, caller, form))


@router.post("/reservations", dependencies=[CsrfChecked])
async def book(request: Request, db: SessionDep, settings: SettingsDep, user: UserDep, equipment: Text = "",
               kind: Text = "", count: Text = "1", vcpus: Text = "", ram_gib: Text = "", start: Text = "",
               hours: Text = "", owner: Text = EXPERIMENT) -> RedirectResponse:
    """Book as the API does: for the session's experiment, or project-wide for a project of
    the user's. Refused: the form again as typed, with the conflict and the windows offered."""
    form = BookingForm(equipment, kind, count, vcpus, ram_gib, start, hours, owner)
    try:
        caller = await experiment_caller(request, db) if owner == EXPERIMENT else user
        reservation = await service.create(db, settings, caller, form.request())
    except FormErrors as exc:
        raise FormRejected(request, "reservation_form.html", await _form_context(db, user, form), exc.errors) from None
    except service.Unavailable as exc:
        context = await _form_context(db, user, form) | {
            "conflicts": exc.extra.get("conflicts", []),
            "alternatives": [(dt.datetime.fromisoformat(a["starts_at"]), dt.datetime.fromisoformat(a["ends_at"]),
                              book_query(dt.datetime.fromisoformat(a["starts_at"]),
                                         **(asdict(form) | {"start": ""})))
                             for a in exc.extra.get("alternatives", [])]}
        refused = FormRejected(request, "reservation_form.html", context, {"form": exc.detail})
        refused.response.status_code = 409
        raise refused from exc
    except ProblemError as exc:
        raise FormRejected(request, "reservation_form.html", await _form_context(db, user, form),
                           field_error(exc.detail)) from exc
    out = (await service.outs(db, settings.site_id, [reservation]))[0]
    held = ", ".join(i.name for i in out.equipment) or "microVM capacity"
    return redirect(request, f"{UI}/reservations?week={out.starts_at.date().isoformat()}#r-{out.id}",
                    f"Reserved {held} from {out.starts_at:%a %d %b %H:%M} to {out.ends_at:%a %d %b %H:%M} UTC.")


@router.post("/reservations/{reservation_id}/extend", dependencies=[CsrfChecked])
async def extend(reservation_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep,
                 hours: Text = "") -> RedirectResponse:
    """Move the end later by ``hours`` where the calendar is free (refused: said next to the field)."""
    reservation = await service.get(db, caller, path_id(reservation_id, service.ID_TYPE), write=True)
    try:
        await service.extend(db, settings, caller, reservation, ReservationExtend(hours=float(hours)))
    except (ValueError, ValidationError, ProblemError) as exc:
        detail = exc.detail if isinstance(exc, ProblemError) else "give a positive number of hours"
        raise FormRejected(request, "reservations.html", await _week_context(db, settings, caller, None),
            {f"extend-{reservation_id}": detail}) from None
    return redirect(request, f"{UI}/reservations#r-{reservation_id}",
                    f"Extended to {reservation.ends_at:%a %d %b %H:%M} UTC.")


@router.get("/reservations/{reservation_id}/cancel", response_class=HTMLResponse)
async def confirm_cancel(reservation_id: str, request: Request, db: SessionDep, settings: SettingsDep,
                         caller: UserDep) -> HTMLResponse:
    """Ask before cancelling (an admin cancelling another project's gives the reason)."""
    reservation = await service.get(db, caller, path_id(reservation_id, service.ID_TYPE))
    out = (await service.outs(db, settings.site_id, [reservation]))[0]
    return render(request, "reservation_cancel.html", r=out, foreign=out.project_id not in caller.project_ids,
                  reason="", errors={})


@router.post("/reservations/{reservation_id}/cancel", dependencies=[CsrfChecked])
async def cancel(reservation_id: str, request: Request, db: SessionDep, settings: SettingsDep, caller: UserDep,
                 reason: Text = "") -> RedirectResponse:
    """Cancel as the API does: what it holds is free from now."""
    reservation = await service.get(db, caller, path_id(reservation_id, service.ID_TYPE), write=True)
    try:
        await service.cancel(db, request.app.state.queue, caller, reservation, reason)
    except ProblemError as exc:
        out = (await service.outs(db, settings.site_id, [reservation]))[0]
        raise FormRejected(request, "reservation_cancel.html", {
            "r": out, "foreign": out.project_id not in caller.project_ids, "reason": reason},
            {"reason": exc.detail}) from exc
    return redirect(request, f"{UI}/reservations", "Cancelled the reservation.")
