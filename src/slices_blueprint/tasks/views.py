"""GET /tasks/{id}: follow any write."""

from __future__ import annotations

from slices_blueprint.core.deps import BI_PREFIX, SessionDep, SettingsDep
from slices_blueprint.core.errors import NotFound, problem_responses
from slices_blueprint.core.ids import path_id
from slices_blueprint.core.routing import api_router
from slices_blueprint.identity.deps import CallerDep
from slices_blueprint.identity.models import Experiment
from slices_blueprint.tasks.models import Task
from slices_blueprint.tasks.schemas import TaskOut
from slices_blueprint.tasks.service import task_out

router = api_router(BI_PREFIX, "tasks")


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=problem_responses(404, 422))
async def get_task(task_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> TaskOut:
    """A task's status and progress (``completed``, 0-100); a batch aggregates its subtasks."""
    task = await session.get(Task, path_id(task_id, "task"))
    if task is None or not await _may_see(session, caller, task):  # another's: as if missing
        raise NotFound("no such task")
    return await task_out(session, task, settings.site_id)


async def _may_see(session: SessionDep, caller: CallerDep, task: Task) -> bool:
    if caller.experiment is not None:
        return task.experiment_id == caller.experiment.id
    if caller.is_admin or (caller.user and task.created_by == caller.user.id):
        return True
    if task.experiment_id is None or task.resource_id is None:  # a batch: its creator's
        return False
    experiment = await session.get(Experiment, task.experiment_id)  # its resource's project
    return experiment is not None and experiment.project_id in caller.project_ids
