"""The resource state machine, every pair of states: what is allowed, what is refused (409)
and what each action needs. No server, no database: plain objects."""

from __future__ import annotations

import itertools
from typing import get_args

import pytest

from slices_blueprint.core.errors import Conflict
from slices_blueprint.resources import states
from slices_blueprint.resources.models import ComputeResource

ALL = get_args(states.Status)

# The machine as docs/ARCHITECTURE.md draws it, written out by hand: every change allowed
# besides staying put.
ALLOWED = {
    ("pending", "provisioning"), ("provisioning", "running"),
    ("running", "resetting"), ("resetting", "running"),
    ("running", "pausing"), ("pausing", "paused"), ("paused", "resuming"), ("resuming", "running"),
    ("running", "stopping"), ("stopping", "stopped"),
    ("stopped", "starting"), ("starting", "running"),
    ("running", "stopped"), ("paused", "stopped"),  # the provider reports it powered off
    ("stopped", "resetting"), ("stopped", "running"),
    ("error", "resetting"), ("error", "running"), ("error", "stopped"),
    ("deleting", "deleted"),
    *((live, "deleting") for live in ALL if live not in ("deleting", "deleted", "error")),
    ("error", "deleting"),
    *((live, "error") for live in ALL if live not in ("deleted", "error")),
}


def resource(status: str, node: str | None = "node-1") -> ComputeResource:
    return ComputeResource(friendly_name="r1", status=status, status_reason="old reason",
                           provider_resource_id=node)


def test_the_status_type_names_every_state_of_the_machine() -> None:
    assert set(ALL) == set(states.TRANSITIONS)


@pytest.mark.parametrize(("current", "new"), sorted(itertools.product(ALL, ALL)))
def test_each_transition_is_allowed_or_refused(current: str, new: str) -> None:
    row = resource(current)
    allowed = current == new or (current, new) in ALLOWED
    assert states.can_transition(current, new) is allowed
    if allowed:
        states.transition(row, new, "why")
        assert row.status == new
        assert row.status_reason == ("why" if new in ("error", "stopped", "deleted") else None)
    else:
        with pytest.raises(Conflict) as refused:
            states.transition(row, new, "why")
        assert refused.value.detail == f"resource 'r1' is {current}; it cannot become {new}"
        assert refused.value.extra == {"current_status": current}
        assert (row.status, row.status_reason) == (current, "old reason")  # untouched


def test_deleted_is_the_end() -> None:
    assert all(not states.can_transition("deleted", new) for new in ALL if new != "deleted")
    assert "deleted" not in states.LIVE and states.LIVE == frozenset(ALL) - {"deleted"}


@pytest.mark.parametrize(("action", "current"), sorted(itertools.product(states.ACTIONS, ALL)))
def test_each_action_starts_from_its_states_only(action: str, current: str) -> None:
    allowed_from, in_flight = states.ACTIONS[action]
    row = resource(current)
    if current in allowed_from:
        assert states.start_action(row, action) == in_flight == states.IN_FLIGHT[action]
        assert row.status == in_flight
    else:
        with pytest.raises(Conflict, match=f"cannot {action} resource 'r1' while it is {current}"):
            states.start_action(row, action)
        assert row.status == current


def test_actions_need_what_the_api_documents() -> None:
    assert {a: set(f) for a, (f, _) in states.ACTIONS.items()} == {
        "reset": {"running", "stopped", "error"}, "pause": {"running"}, "resume": {"paused"},
        "stop": {"running"}, "start": {"stopped"},
        "delete": set(ALL) - {"deleting", "deleted"},
    }


def test_a_resource_never_created_cannot_be_reset() -> None:
    row = resource("error", node=None)
    with pytest.raises(Conflict, match="was never created; delete it instead"):
        states.start_action(row, "reset")
    assert row.status == "error"


@pytest.mark.parametrize("operation", sorted(states.SUCCESS_STATE))
def test_each_operation_runs_through_its_in_flight_state_to_its_outcome(operation: str) -> None:
    in_flight = states.IN_FLIGHT[operation]
    assert states.can_transition(in_flight, states.SUCCESS_STATE[operation])
    assert states.can_transition(in_flight, "error")  # a failure is recorded, never lost
    assert in_flight not in states.FINAL and states.SUCCESS_STATE[operation] in states.FINAL
