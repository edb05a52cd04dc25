"""``slices-blueprint reserve``, ``reservations`` and ``availability``: advance reservations
of equipment and microVM host capacity, from the command line."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer

from slices_blueprint.cli.http import JsonOutput, ServiceUrl, Token, request_json, resolve_token
from slices_blueprint.cli.output import console
from slices_blueprint.core.api_paths import API_PREFIX

app = typer.Typer(help="Your reservations (without a command: list them, with the time left).",
                  invoke_without_command=True)
Kind = Annotated[str | None, typer.Option(help="Any items of this kind (with --count).")]
Count = Annotated[int, typer.Option(help="How many items of --kind.")]
EquipmentNames = Annotated[list[str] | None, typer.Option("--equipment", help="An item by name (repeatable).")]
Vcpus = Annotated[int, typer.Option(help="MicroVM host vCPUs.")]
RamMib = Annotated[int, typer.Option("--ram-mib", help="MicroVM host memory, MiB.")]
Hours = Annotated[float, typer.Option(help="How long, in hours.")]
ReservationId = Annotated[str, typer.Argument(help="The reservation's id (reservation_...).")]


def _api(url: str) -> str:
    return f"{url.rstrip('/')}{API_PREFIX}"


def _when(text: str | None) -> str | None:
    """An ISO 8601 time (UTC unless it names its zone), or None for "now"."""
    if text in (None, "now"):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give an ISO 8601 time, e.g. 2030-01-07T09:00 (UTC) or 'now'") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()


def time_left(seconds: int) -> str:
    """``seconds`` as "2d 3h", "3h 05m" or "4m 10s"."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def reservation_note(row: dict[str, Any]) -> str | None:
    """The reservation a resource or QKD network runs inside and the time left before it is
    deleted (its expiry: the reservation's end at the latest)."""
    if not row.get("reservation_id"):
        return None
    left = dt.datetime.fromisoformat(row["expires_at"]) - dt.datetime.now(dt.UTC)
    return f"{row['reservation_id']} ({time_left(max(0, int(left.total_seconds())))} left)"


def _holds(row: dict[str, Any]) -> str:
    parts = [item["name"] for item in row["equipment"]]
    if row["vcpus"] or row["ram_mib"]:
        parts.append(f"{row['vcpus']} vCPUs, {row['ram_mib']} MiB")
    return ", ".join(parts)


def _note(row: dict[str, Any]) -> str:
    if row["status"] == "cancelled":
        return f"cancelled by {row['cancelled_by']}: {row['cancel_reason'] or 'no reason given'}"
    return "ending soon" if row["ending_soon"] else ""


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    from rich.table import Table

    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "status", "starts_at", "ends_at", "time left", "holds", "runs inside", "note",
                  title="Reservations")
    for row in rows:
        left = time_left(row["seconds_left"]) if row["status"] in ("scheduled", "active") else ""
        table.add_row(row["id"], row["status"], row["starts_at"], row["ends_at"], left, _holds(row),
                      ", ".join(row["bound"]), _note(row))
    console().print(table)


def reserve(
    url: ServiceUrl, token: Token = None,
    kind: Kind = None, count: Count = 1, equipment: EquipmentNames = None,
    vcpus: Vcpus = 0, ram_mib: RamMib = 0,
    start: Annotated[str | None, typer.Option(help="ISO 8601 (UTC unless zoned), default now.")] = None,
    hours: Hours = 1.0,
    project: Annotated[str | None, typer.Option(help="With a user token: which of your projects.")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Reserve equipment and/or microVM host capacity (refused at once when taken, with
    the next free start times)."""
    body = {"equipment": equipment or [], "any_of": [{"kind": kind, "count": count}] if kind else [],
            "vcpus": vcpus, "ram_mib": ram_mib, "starts_at": _when(start), "hours": hours, "project_id": project}
    _show([request_json("POST", f"{_api(url)}/reservations", resolve_token(token), json=body)], as_json)


def availability(
    url: ServiceUrl, token: Token = None,
    kind: Kind = None, count: Count = 1, equipment: EquipmentNames = None,
    vcpus: Vcpus = 0, ram_mib: RamMib = 0, hours: Hours = 1.0,
    after: Annotated[str | None, typer.Option(help="ISO 8601, default now.")] = None,
    limit: Annotated[int, typer.Option(help="How many start times.")] = 5,
    as_json: JsonOutput = False,
) -> None:
    """The next start times at which what you ask for is free for --hours."""
    params: dict[str, Any] = {"hours": hours, "count": count, "vcpus": vcpus, "ram_mib": ram_mib,
                              "equipment": equipment or [], "limit": limit}
    if kind:
        params["kind"] = kind
    if _when(after):
        params["after"] = _when(after)
    answer = request_json("GET", f"{_api(url)}/reservations/availability", resolve_token(token), params=params)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    from rich.table import Table

    table = Table("starts_at", "ends_at", title="Free")
    for slot in answer["slots"]:
        table.add_row(slot["starts_at"], slot["ends_at"])
    console().print(table if answer["slots"] else "nothing free within the reservation horizon")


@app.callback()
def list_(
    ctx: typer.Context, url: ServiceUrl, token: Token = None,
    all_: Annotated[bool, typer.Option("--all", help="Include ended and cancelled ones.")] = False,
    as_json: JsonOutput = False,
) -> None:
    """Your reservations (without a command: list them, with the time left)."""
    if ctx.invoked_subcommand is None:
        _show(request_json("GET", f"{_api(url)}/reservations", resolve_token(token),
                           params={"include_past": all_}), as_json)


@app.command("extend")
def extend(reservation: ReservationId, hours: Hours, url: ServiceUrl, token: Token = None,
           as_json: JsonOutput = False) -> None:
    """Add --hours to a reservation's end (only where the calendar is free)."""
    row = request_json("POST", f"{_api(url)}/reservations/{reservation}/extend", resolve_token(token),
                       json={"hours": hours})
    _show([row], as_json)


@app.command("cancel")
def cancel(reservation: ReservationId, url: ServiceUrl, token: Token = None,
           reason: Annotated[str, typer.Option(help="Why (the owner reads it when an admin cancels).")] = "",
           as_json: JsonOutput = False) -> None:
    """Cancel a reservation: what it held is free from now."""
    row = request_json("POST", f"{_api(url)}/reservations/{reservation}/cancel", resolve_token(token),
                       json={"reason": reason})
    _show([row], as_json)


def register(root: typer.Typer) -> None:
    """Add ``reserve``, ``reservations`` and ``availability`` to the root CLI."""
    root.command()(reserve)
    root.command()(availability)
    root.add_typer(app, name="reservations")
