"""BI routes for the experiment as one file: export, plan, apply, and the record an RO-Crate
packs. All need the experiment token: the file is one experiment's."""

from __future__ import annotations

from fastapi import Request

from slices_blueprint.core.deps import BI_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import BODY_PROBLEMS, problem_responses
from slices_blueprint.core.routing import api_router
from slices_blueprint.experiments import service
from slices_blueprint.experiments.schemas import ApplyOut, ExperimentFile, ExperimentRecord, PlanOut
from slices_blueprint.identity.deps import CallerDep
from slices_blueprint.tasks.service import task_out

router = api_router(f"{BI_PREFIX}/experiment", "experiment file")


@router.get("/export", response_model=ExperimentFile, responses=problem_responses(403))
async def export(caller: CallerDep, session: SessionDep) -> ExperimentFile:
    """The experiment's live resources, QKD networks and reservations as one file (no secrets)."""
    return await service.export(session, caller)


@router.get("/record", response_model=ExperimentRecord, responses=problem_responses(403))
async def run_record(caller: CallerDep, session: SessionDep, settings: SettingsDep) -> ExperimentRecord:
    """The file, the audit trail and the run's metadata, as an RO-Crate packs them."""
    return await service.run_record(session, settings, caller)


@router.post("/plan", response_model=PlanOut, responses=problem_responses(403, *BODY_PROBLEMS))
async def plan(body: ExperimentFile, caller: CallerDep, session: SessionDep) -> PlanOut:
    """What applying the file would create, change and delete (and what this site lacks); nothing changes."""
    return (await service.make_plan(session, caller, body)).plan


@router.post("/apply", response_model=ApplyOut, status_code=202,
             responses=problem_responses(403, 409, 503, *BODY_PROBLEMS))
async def apply(body: ExperimentFile, request: Request, caller: CallerDep, session: SessionDep,
                settings: SettingsDep) -> ApplyOut:
    """Make the experiment match the file; answers the plan applied and the task of its
    resource operations. Refused (422, listing them) when this site lacks a flavor or image."""
    steps, batch = await service.apply(session, settings, request.app.state.queue, caller, body)
    return ApplyOut(plan=steps, task=await task_out(session, batch, settings.site_id))
