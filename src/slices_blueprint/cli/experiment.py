"""``slices-blueprint experiment ...``: the experiment as one file (export, apply)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from slices_blueprint.cli.client import _follow
from slices_blueprint.cli.http import JsonOutput, ServiceUrl, Token, request_json, resolve_token
from slices_blueprint.cli.output import console
from slices_blueprint.core.api_paths import BI_PREFIX

app = typer.Typer(no_args_is_help=True, help="The experiment as one file: export it, apply it (here or on another site).")


class Format(str, Enum):
    yaml = "yaml"
    ro_crate = "ro-crate"


def _experiment(url: str) -> str:
    return f"{url.rstrip('/')}{BI_PREFIX}/experiment"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(1)


@app.command()
def export(
    url: ServiceUrl, token: Token = None,
    out: Annotated[Path | None, typer.Option("--out", help="The file (YAML), or for ro-crate a directory or a .zip; default: standard output (YAML only).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="yaml: the experiment file; ro-crate: the file, the audit trail and the run's metadata.")] = Format.yaml,
) -> None:
    """Write the experiment's resources, QKD networks and reservations as one file (no secrets)."""
    # yaml and rocrate load only for this command
    from slices_blueprint.experiments.crate import file_yaml, write_crate

    tok = resolve_token(token)
    if fmt is Format.ro_crate:
        if out is None:
            raise _fail("--format ro-crate needs --out DIR or --out FILE.zip")
        write_crate(request_json("GET", f"{_experiment(url)}/record", tok), out)
        typer.echo(f"RO-Crate written to {out}", err=True)
        return
    text = file_yaml(request_json("GET", f"{_experiment(url)}/export", tok))
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"experiment written to {out}", err=True)


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise _fail(f"{path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _fail(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise _fail(f"{path}: expected an experiment file (a mapping with schema_version)")
    return loaded


def _show_plan(plan: dict[str, Any]) -> None:
    from rich.table import Table

    if not plan["steps"]:
        console().print("Nothing to change: the experiment matches the file.")
        return
    table = Table("action", "kind", "name", "how", "what differs", title="Plan")
    colours = {"create": "green", "change": "yellow", "delete": "red"}
    for step in plan["steps"]:
        action = step["action"]
        table.add_row(f"[{colours[action]}]{action}[/]", step["kind"], step["name"], step["how"], ", ".join(step["changes"]))
    console().print(table)


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(help="The experiment file (YAML), as `experiment export` writes it.")],
    url: ServiceUrl, token: Token = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    as_json: JsonOutput = False,
) -> None:
    """Make the experiment match FILE: show the plan (create, change, delete), ask, apply.

    A resource that changes is deleted, then created again once the delete has finished (in
    the same task). Refused before any change when this site lacks a flavor or image."""
    tok, body = resolve_token(token), _load(file)
    plan = request_json("POST", f"{_experiment(url)}/plan", tok, json=body)
    if as_json and (dry_run or not plan["steps"]):
        typer.echo(json.dumps(plan, indent=2))
    elif not as_json:
        _show_plan(plan)
    if plan["missing"]:
        raise _fail("this site lacks: " + "; ".join(plan["missing"]))
    if dry_run or not plan["steps"]:
        return
    if not yes and not typer.confirm("Apply this plan?"):
        raise typer.Exit(1)
    applied = request_json("POST", f"{_experiment(url)}/apply", tok, json=body)
    task = _follow(url, tok, applied["task"]["id"], quiet=as_json)
    if task["status"] != "succeeded":
        raise _fail(f"task {task['id']} {task['status']}: {task.get('error') or ''}")
    plan = request_json("POST", f"{_experiment(url)}/plan", tok, json=body)
    if as_json:
        typer.echo(json.dumps({"task": task, "remaining": plan}, indent=2))
    elif plan["steps"]:
        _show_plan(plan)
        raise _fail("the experiment does not match the file yet (see the plan above)")
    else:
        console().print("Applied: the experiment matches the file.")
