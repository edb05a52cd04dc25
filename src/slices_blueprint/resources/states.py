"""The resource state machine: every status change goes through :func:`transition`.

    pending -> provisioning -> running <-> (resetting | pausing -> paused -> resuming
                                            | stopping -> stopped -> starting)
    any live state -> deleting -> deleted;  any live state -> error (with a reason)

``stopped`` is also reached without an action when the provider reports the node powered
off (the reconciler's drift check): the disk is kept and ``start`` boots it again.

An impossible transition raises :class:`Conflict` (HTTP 409), never a silent overwrite.
"""

from __future__ import annotations

from typing import Literal

from slices_blueprint.core.errors import Conflict
from slices_blueprint.resources.models import ComputeResource

Status = Literal[
    "pending", "provisioning", "running", "resetting", "pausing", "paused", "resuming",
    "stopping", "stopped", "starting", "deleting", "deleted", "error",
]

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"provisioning", "deleting", "error"}),
    "provisioning": frozenset({"running", "deleting", "error"}),
    "running": frozenset({"resetting", "pausing", "stopping", "stopped", "deleting", "error"}),
    "resetting": frozenset({"running", "deleting", "error"}),
    "pausing": frozenset({"paused", "deleting", "error"}),
    "paused": frozenset({"resuming", "stopped", "deleting", "error"}),
    "resuming": frozenset({"running", "deleting", "error"}),
    "stopping": frozenset({"stopped", "deleting", "error"}),
    "stopped": frozenset({"starting", "resetting", "running", "deleting", "error"}),
    "starting": frozenset({"running", "deleting", "error"}),
    "error": frozenset({"resetting", "deleting", "running", "stopped"}),
    "deleting": frozenset({"deleted", "error"}),
    "deleted": frozenset(),
}

FINAL = frozenset({"running", "paused", "stopped", "deleted", "error"})
"""States no operation is under way in (a test or a CLI ``wait`` stops at these)."""

LIVE = frozenset(TRANSITIONS) - {"deleted"}

# What each user action needs and the in-flight state it puts the resource in.
ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "reset": (frozenset({"running", "stopped", "error"}), "resetting"),
    "pause": (frozenset({"running"}), "pausing"),
    "resume": (frozenset({"paused"}), "resuming"),
    "stop": (frozenset({"running"}), "stopping"),
    "start": (frozenset({"stopped"}), "starting"),
    "delete": (LIVE - {"deleting"}, "deleting"),
}

# The state an operation ends in when it succeeds.
SUCCESS_STATE = {"create": "running", "reset": "running", "pause": "paused", "resume": "running",
                 "stop": "stopped", "start": "running", "delete": "deleted"}
IN_FLIGHT = {"create": "provisioning", **{action: state for action, (_, state) in ACTIONS.items()}}

REASONED = frozenset({"error", "stopped", "deleted"})
"""The states that keep the reason given on the way in."""

POWER_ACTIONS = ("pause", "resume", "stop", "start")
"""Actions a driver may not offer (pods cannot be paused); each is a driver method."""


def can_transition(current: str, new: str) -> bool:
    return new == current or new in TRANSITIONS.get(current, frozenset())


def transition(resource: ComputeResource, new: str, reason: str | None = None) -> None:
    """Move ``resource`` to ``new`` or raise 409; ``reason`` is kept for error, stopped and
    deleted (a delete the provider failed: its node may remain)."""
    if not can_transition(resource.status, new):
        raise Conflict(
            f"resource {resource.friendly_name!r} is {resource.status}; it cannot become {new}",
            current_status=resource.status,
        )
    resource.status = new
    resource.status_reason = reason if new in REASONED else None


def start_action(resource: ComputeResource, action: str) -> str:
    """Check ``action`` is allowed now and move to its in-flight state; returns that state."""
    allowed_from, in_flight = ACTIONS[action]
    if resource.status not in allowed_from:
        raise Conflict(
            f"cannot {action} resource {resource.friendly_name!r} while it is {resource.status}",
            current_status=resource.status,
        )
    if action == "reset" and not resource.provider_resource_id:
        raise Conflict(f"resource {resource.friendly_name!r} was never created; delete it instead")
    transition(resource, in_flight)
    return in_flight
