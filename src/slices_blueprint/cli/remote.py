"""``slices-blueprint ssh`` and ``scp``: log in to a resource, or copy files to and from it,
by its name (the login the service reports: host, port, user)."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from slices_blueprint.cli.client import _bi, _resolve_resource, ssh_login
from slices_blueprint.cli.errors import fail
from slices_blueprint.cli.http import ServiceUrl, Token, request_json, resolve_token

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def login(url: str, token: str, ref: str) -> tuple[str, int]:
    """``user@host`` (or ``host``) and the SSH port of a running resource."""
    row = request_json("GET", f"{_bi(url)}/resources/{_resolve_resource(url, token, ref)}", token)
    if (found := ssh_login(row)) is None:
        reason = f": {row['status_reason']}" if row.get("status_reason") else ""
        raise fail(f"{row['friendly_name']} is {row['status']}{reason}; it has no SSH login now "
                   f"(see `slices-blueprint show {row['friendly_name']}`)")
    host, port, user = found
    return (f"{user}@{host}" if user else host), port


def _run(program: str, argv: list[str]) -> None:
    """Replace this process with ``program`` (its exit status becomes ours)."""
    if shutil.which(program) is None:
        raise fail(f"{program} is not installed here (apt-get install openssh-client)")
    os.execvp(program, [program, *argv])


def ssh(
    ctx: typer.Context,
    resource: Annotated[str, typer.Argument(help="The resource's name or id; any further arguments go to ssh.")],
    url: ServiceUrl, token: Token = None,
) -> None:
    """Log in to a resource by SSH (e.g. `slices-blueprint ssh vm1`, `slices-blueprint ssh vm1 uname -a`)."""
    target, port = login(url, resolve_token(token), resource)
    _run("ssh", ["-p", str(port), target, *ctx.args])


def scp(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Sources, then the destination; NAME:PATH is a path on a "
                                                    "resource (e.g. `scp data.csv vm1:/tmp/`).")],
    url: ServiceUrl, token: Token = None,
) -> None:
    """Copy files to or from resources by name (scp with their host, port and user)."""
    tok = resolve_token(token)
    ports: set[int] = set()
    argv: list[str] = []
    for path in [*paths, *ctx.args]:
        name, colon, rest = path.partition(":")
        if colon and name and "/" not in name and not path.startswith("-"):
            target, port = login(url, tok, name)
            ports.add(port)
            path = f"{target}:{rest}"
        argv.append(path)
    if len(ports) > 1:
        raise fail(f"the resources named listen for SSH on different ports ({sorted(ports)}): copy to one at a time")
    _run("scp", [*(["-P", str(ports.pop())] if ports else []), *argv])


def register(app: typer.Typer) -> None:
    """Add ``ssh`` and ``scp`` to the root CLI."""
    app.command(context_settings=PASS_THROUGH)(ssh)
    app.command(context_settings=PASS_THROUGH)(scp)
