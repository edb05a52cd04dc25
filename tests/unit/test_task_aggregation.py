"""How a batch task's status, ``completed`` and errors derive from its subtasks (what
``GET /tasks/{id}`` answers). No server, no database: plain task objects."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from slices_blueprint.tasks.models import Task
from slices_blueprint.tasks.service import TERMINAL, _task_out, aggregate_status

SITE = "test"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def task(status: str, completed: int = 0, *, kind: str = "create", error: str | None = None,
         finished_at: dt.datetime | None = None) -> Task:
    return Task(id=uuid.uuid4(), kind=kind, status=status, completed=completed, error=error,
                resource_id=uuid.uuid4() if kind != "batch" else None, result={},
                finished_at=finished_at, created_at=T0, updated_at=T0)


@pytest.mark.parametrize(("parts", "expected"), [
    ([], ("succeeded", 100)),  # nothing to do is done
    ([("pending", 0)], ("pending", 0)),
    ([("pending", 0), ("pending", 0)], ("pending", 0)),
    ([("running", 50), ("pending", 0)], ("running", 25)),
    ([("running", 99), ("running", 98)], ("running", 98)),  # the mean, rounded down
    ([("succeeded", 100), ("pending", 0)], ("running", 50)),  # one done: under way
    ([("failed", 0), ("running", 40)], ("running", 20)),  # a failure does not end the batch early
    ([("cancelled", 0), ("pending", 0)], ("running", 0)),
    ([("succeeded", 100), ("succeeded", 100)], ("succeeded", 100)),
    ([("succeeded", 100), ("cancelled", 0)], ("succeeded", 100)),  # a cancelled part is no failure
    ([("succeeded", 100), ("failed", 30)], ("failed", 100)),  # ended: 100 whatever the parts say
    ([("failed", 0), ("cancelled", 0)], ("failed", 100)),
])
def test_a_batch_status_and_progress_come_from_its_parts(parts: list[tuple[str, int]],
                                                         expected: tuple[str, int]) -> None:
    assert aggregate_status([task(s, c) for s, c in parts]) == expected


def test_terminal_states() -> None:
    assert TERMINAL == {"succeeded", "failed", "cancelled"}


def test_the_batch_view_aggregates_its_subtasks() -> None:
    batch = task("pending", kind="batch")
    done = task("succeeded", 100, finished_at=T0 + dt.timedelta(seconds=5))
    broken = task("failed", 10, error="quota exceeded at the provider",
                  finished_at=T0 + dt.timedelta(seconds=9))
    out = _task_out(batch, [done, broken], SITE)
    assert (out.status, out.completed) == ("failed", 100)
    assert out.finished_at == T0 + dt.timedelta(seconds=9)  # when the last part ended
    assert out.error == "quota exceeded at the provider"
    assert out.resource_id is None and len(out.resource_ids) == 2
    assert [s.status for s in out.subtasks] == ["succeeded", "failed"]


def test_an_unfinished_batch_has_no_end_time_even_when_some_parts_ended() -> None:
    batch = task("pending", kind="batch")
    out = _task_out(batch, [task("succeeded", 100, finished_at=T0), task("running", 60)], SITE)
    assert (out.status, out.completed, out.finished_at) == ("running", 80, None)


def test_a_single_task_reports_its_own_row() -> None:
    one = task("running", 42)
    out = _task_out(one, [], SITE)
    assert (out.status, out.completed, out.subtasks) == ("running", 42, [])
    assert out.resource_ids == [out.resource_id] and out.resource_id.startswith("resource_")
