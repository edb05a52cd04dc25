"""``slices-blueprint logs`` and ``events``: a resource's log (a pod's container, a microVM's
console; ``--follow`` keeps printing) and its audit trail."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from slices_blueprint.cli.client import _bi, _print, _resolve_resource
from slices_blueprint.cli.http import JsonOutput, ServiceUrl, Token, request_json, resolve_token

FOLLOW_SECONDS = 2.0


def new_lines(seen: list[str], now: list[str]) -> list[str]:
    """The lines of ``now`` (a log's tail) after those already printed (``seen``'s tail):
    the longest end of ``seen`` that starts ``now`` is skipped."""
    for overlap in range(min(len(seen), len(now)), 0, -1):
        if seen[-overlap:] == now[:overlap]:
            return now[overlap:]
    return now


def logs(
    resource: str, url: ServiceUrl, token: Token = None,
    tail: Annotated[int, typer.Option(help="The last lines to show.")] = 200,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")] = False,
) -> None:
    """A resource's log, by id or name: a pod's container log, a microVM's console."""
    tok = resolve_token(token)
    rid = _resolve_resource(url, tok, resource)
    seen: list[str] = []
    while True:
        text = request_json("GET", f"{_bi(url)}/resources/{rid}/logs", tok, params={"tail": tail},
                            flags={"tail": "--tail"}) or ""
        now = text.splitlines()
        for line in new_lines(seen, now):
            typer.echo(line)
        seen = now
        if not follow:
            return
        time.sleep(FOLLOW_SECONDS)


def events(resource: str, url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """A resource's audit trail (by id or name), newest first: who did what, and how it ended."""
    tok = resolve_token(token)
    rows = request_json("GET", f"{_bi(url)}/resources/{_resolve_resource(url, tok, resource)}/events", tok)
    if not as_json:
        rows = [dict(row, at=row["at"][:19].replace("T", " ")) for row in rows]
    _print(rows, as_json, ["at", "actor", "action", "outcome", "message"], f"Events of {resource}")


def register(app: typer.Typer) -> None:
    """Add ``logs`` and ``events`` to the root CLI."""
    app.command()(logs)
    app.command()(events)
