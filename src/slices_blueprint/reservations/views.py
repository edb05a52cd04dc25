"""Our own routes for reservations (``/api/v1``): equipment (admins write, everyone reads the
bookable), reservations, availability and reserved-hours limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request

from slices_blueprint.core.deps import API_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import BODY_PROBLEMS, NotFound, problem_responses
from slices_blueprint.core.ids import id_schema, path_id
from slices_blueprint.core.routing import api_router
from slices_blueprint.core.validation import UtcDatetime
from slices_blueprint.identity.deps import CallerDep
from slices_blueprint.reservations import equipment, limits, service
from slices_blueprint.reservations.schemas import (
    MAX_ITEMS,
    AvailabilityOut,
    EquipmentCreate,
    EquipmentOut,
    EquipmentPatch,
    Hours,
    Kind,
    KindCount,
    Name,
    ReservationAsk,
    ReservationCancel,
    ReservationCreate,
    ReservationExtend,
    ReservationLimitOut,
    ReservationLimitUpdate,
    ReservationOut,
)

router = api_router(API_PREFIX, "reservations")
RESERVATION_ID = Path(json_schema_extra=id_schema(service.ID_TYPE))
EQUIPMENT_ID = Path(json_schema_extra=id_schema(equipment.ID_TYPE))
ProjectId = Annotated[str, Path(min_length=1, max_length=200)]
PER_RESERVATION = problem_responses(404, 422)  # another project's: 404 like a missing one


@router.get("/equipment", response_model=list[EquipmentOut])
async def list_equipment(caller: CallerDep, session: SessionDep, settings: SettingsDep,
                         kind: Kind | None = None, include_hidden: bool = False) -> list[EquipmentOut]:
    """Bookable equipment (hidden items too for admins who ask)."""
    rows = await equipment.list_equipment(session, include_hidden=include_hidden and caller.is_admin, kind=kind)
    return [equipment.equipment_out(e, settings.site_id) for e in rows]


@router.post("/equipment", response_model=EquipmentOut, status_code=201,
             responses=problem_responses(403, 409, *BODY_PROBLEMS))
async def add_equipment(body: EquipmentCreate, caller: CallerDep, session: SessionDep,
                        settings: SettingsDep) -> EquipmentOut:
    """Register an item for booking (admins); its name is unique at the site."""
    admin = caller.require_admin()
    return equipment.equipment_out(await equipment.add(session, body, settings.site_id, admin.id), settings.site_id)


@router.patch("/equipment/{equipment_id}", response_model=EquipmentOut,
              responses=problem_responses(403, 404, *BODY_PROBLEMS))
async def update_equipment(body: EquipmentPatch, caller: CallerDep, session: SessionDep, settings: SettingsDep,
                           equipment_id: str = EQUIPMENT_ID) -> EquipmentOut:
    """Hide an item from new bookings or show it again, or replace its attributes (admins)."""
    admin = caller.require_admin()
    item = await equipment.get(session, path_id(equipment_id, equipment.ID_TYPE))
    return equipment.equipment_out(await equipment.update(session, item, body, admin.id), settings.site_id)


@router.get("/reservations", response_model=list[ReservationOut])
async def list_reservations(caller: CallerDep, session: SessionDep, settings: SettingsDep,
                            include_past: bool = False) -> list[ReservationOut]:
    """Your reservations, scheduled and active (ended and cancelled too with
    ``include_past``); every project's for admins."""
    rows = await service.list_reservations(session, caller, include_past=include_past)
    return await service.outs(session, settings.site_id, rows)


@router.post("/reservations", response_model=ReservationOut, status_code=201,
             responses=problem_responses(403, 409, *BODY_PROBLEMS))
async def create_reservation(body: ReservationCreate, caller: CallerDep, session: SessionDep,
                             settings: SettingsDep) -> ReservationOut:
    """Reserve equipment (by name, or any N of a kind) and microVM host capacity over
    ``[starts_at, ends_at)``. Taken then: 409 with ``conflicts`` and the next free windows
    (``alternatives``); past the project's reserved hours: 403."""
    reservation = await service.create(session, settings, caller, body)
    return (await service.outs(session, settings.site_id, [reservation]))[0]


@router.get("/reservations/availability", response_model=AvailabilityOut, responses=problem_responses(422))
async def availability(
    caller: CallerDep, session: SessionDep, settings: SettingsDep,
    hours: Annotated[Hours, Query(description="how long")],
    kind: Kind | None = None,
    count: Annotated[int, Query(ge=1, le=MAX_ITEMS)] = 1,
    equipment_names: Annotated[list[Name], Query(alias="equipment", max_length=MAX_ITEMS)] = [],  # noqa: B006 - FastAPI copies it
    vcpus: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ram_mib: Annotated[int, Query(ge=0, le=1 << 40)] = 0,
    after: UtcDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> AvailabilityOut:
    """The next start times (from ``after``, default now) at which ``count`` items of
    ``kind``, the named ``equipment`` and ``vcpus``/``ram_mib`` of host capacity are free for
    ``hours``: tried at the earliest instant, at the exact ends of reservations in the way
    and on every quarter hour (UTC)."""
    ask = ReservationAsk(equipment=equipment_names, any_of=[KindCount(kind=kind, count=count)] if kind else [],
                         vcpus=vcpus, ram_mib=ram_mib)
    return await service.availability(session, settings, ask, hours, after, limit)


@router.get("/reservations/{reservation_id}", response_model=ReservationOut, responses=PER_RESERVATION)
async def get_reservation(caller: CallerDep, session: SessionDep, settings: SettingsDep,
                          reservation_id: str = RESERVATION_ID) -> ReservationOut:
    """One reservation: its state, what it holds, time left, and why it was cancelled."""
    reservation = await service.get(session, caller, path_id(reservation_id, service.ID_TYPE))
    return (await service.outs(session, settings.site_id, [reservation]))[0]


@router.post("/reservations/{reservation_id}/extend", response_model=ReservationOut,
             responses=problem_responses(403, 404, 409, *BODY_PROBLEMS))
async def extend_reservation(body: ReservationExtend, caller: CallerDep, session: SessionDep,
                             settings: SettingsDep, reservation_id: str = RESERVATION_ID) -> ReservationOut:
    """Move the end later, only where what it holds is free until then (409 naming what
    is in the way)."""
    reservation = await service.get(session, caller, path_id(reservation_id, service.ID_TYPE), write=True)
    await service.extend(session, settings, caller, reservation, body)
    return (await service.outs(session, settings.site_id, [reservation]))[0]


@router.post("/reservations/{reservation_id}/cancel", response_model=ReservationOut,
             responses=problem_responses(403, 404, 409, *BODY_PROBLEMS))
async def cancel_reservation(body: ReservationCancel, request: Request, caller: CallerDep, session: SessionDep,
                             settings: SettingsDep, reservation_id: str = RESERVATION_ID) -> ReservationOut:
    """Cancel a reservation (yours, or any for admins, who give the reason its owner reads);
    the resources and QKD networks running inside it are deleted."""
    reservation = await service.get(session, caller, path_id(reservation_id, service.ID_TYPE), write=True)
    await service.cancel(session, request.app.state.queue, caller, reservation, body.reason)
    return (await service.outs(session, settings.site_id, [reservation]))[0]


@router.get("/reservation-limits", response_model=list[ReservationLimitOut])
async def list_limits(caller: CallerDep, session: SessionDep, settings: SettingsDep) -> list[ReservationLimitOut]:
    """Reserved hours held and allowed, for your projects (every project with reservations
    or a limit, for admins)."""
    projects = await limits.known_projects(session) if caller.is_admin else sorted(caller.project_ids)
    return [await limits.limit_out(session, settings, p) for p in projects]


@router.put("/reservation-limits/{project_id}", response_model=ReservationLimitOut,
            responses=problem_responses(403, *BODY_PROBLEMS))
async def put_limit(project_id: ProjectId, body: ReservationLimitUpdate, caller: CallerDep, session: SessionDep,
                    settings: SettingsDep) -> ReservationLimitOut:
    """Set a project's reserved-hours limit (admins): ``{"max_hours": N}``, ``null`` for
    unlimited, ``{}`` for the site default again."""
    admin = caller.require_admin()
    await limits.set_override(session, project_id, body, admin.id)
    return await limits.limit_out(session, settings, project_id)


@router.get("/reservation-limits/{project_id}", response_model=ReservationLimitOut, responses=problem_responses(404, 422))
async def get_limit(project_id: ProjectId, caller: CallerDep, session: SessionDep,
                    settings: SettingsDep) -> ReservationLimitOut:
    """Reserved hours held and allowed for one of your projects."""
    if not (caller.is_admin or project_id in caller.project_ids):
        raise NotFound("no such project among yours")
    return await limits.limit_out(session, settings, project_id)
