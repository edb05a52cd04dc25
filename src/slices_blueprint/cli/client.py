"""Client commands: talk to a running service over its BI API."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import uuid
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from slices_blueprint.cli.errors import fail, load_document, read_text
from slices_blueprint.cli.http import (
    JsonOutput,
    ServiceUrl,
    Token,
    UserToken,
    request_json,
    resolve_token,
)
from slices_blueprint.cli.output import console
from slices_blueprint.cli.reservations import time_left
from slices_blueprint.cli.tokens import claims
from slices_blueprint.core.api_paths import API_PREFIX, BI_PREFIX

FINAL_STATES = {"running", "paused", "stopped", "deleted", "error"}


def _bi(url: str) -> str:
    return f"{url.rstrip('/')}{BI_PREFIX}"


def _print(rows: Any, as_json: bool, columns: list[str], title: str | None = None) -> None:
    from rich.table import Table

    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    items = rows if isinstance(rows, list) else [rows]
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for item in items:
        table.add_row(*["" if item.get(c) is None else str(item.get(c)) for c in columns])
    console().print(table)


SHORT_ID = 8  # the last characters of an id, as `list` shows them


def short_id(resource_id: str) -> str:
    """The end of an id (its random part), enough to tell the experiment's resources apart."""
    return resource_id[-SHORT_ID:]


def _resolve_resource(url: str, token: str, ref: str) -> str:
    """A resource id from an id, a short id (as `list` shows) or a friendly name in the
    caller's experiment."""
    if ref.startswith("resource_"):
        return ref
    rows = request_json("GET", f"{_bi(url)}/resources", token)
    matches = [r for r in rows if r["friendly_name"] == ref] or [r for r in rows if len(ref) >= 4 and r["id"].endswith(ref)]
    if not matches:
        raise fail(f"no live resource named {ref!r} (see `slices-blueprint list`)")
    return matches[0]["id"]


def flavors(url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """List flavors."""
    rows = request_json("GET", f"{_bi(url)}/flavors", resolve_token(token))
    _print(rows, as_json, ["id", "friendly_name", "flavor_type", "vcpus", "ram_mib", "disk_mb"], "Flavors")


def images(url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """List disk images."""
    rows = request_json("GET", f"{_bi(url)}/disk-images", resolve_token(token))
    _print(rows, as_json, ["id", "friendly_name", "flavor_type", "default_username", "location"], "Disk images")


def create(
    url: ServiceUrl,
    token: Token = None,
    user_token: UserToken = None,
    name: Annotated[list[str] | None, typer.Option("--name", help="Resource name (repeat for several).")] = None,
    image: Annotated[str | None, typer.Option(help="Disk image id or name.")] = None,
    flavor: Annotated[str | None, typer.Option(help="Flavor id or name.")] = None,
    duration: Annotated[float | None, typer.Option(help="Hours until it expires (capped at the experiment's expiry).")] = None,
    ssh_key: Annotated[list[Path] | None, typer.Option("--ssh-key", help="Public key file to authorize (repeatable).")] = None,
    userdata: Annotated[Path | None, typer.Option(help="cloud-init user data file.")] = None,
    network: Annotated[list[str] | None, typer.Option("--network", help="Network name (repeatable).")] = None,
    public_ipv4: Annotated[bool, typer.Option("--public-ipv4", help="Ask for a public IPv4 address.")] = False,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="JSON or YAML request body (the resources list or the whole request).")] = None,
    request_id: Annotated[str | None, typer.Option(help="Idempotency key (default: a new UUID).")] = None,
    reservation: Annotated[str | None, typer.Option(help="Run inside this reservation (reservation_...): created at "
                                                         "its start, deleted at its end.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until every resource settles.")] = True,
    as_json: JsonOutput = False,
) -> None:
    """Create resources from flags or a file. Waits (with a progress bar) until they run, then
    prints how to log in, or why they failed; --no-wait answers the task at once (scripts)."""
    tok = resolve_token(token)
    if duration is not None and duration <= 0:
        raise fail(f"--duration {duration:g}: give the hours until it expires, more than 0")
    body = _create_body(url, tok, name, image, flavor, ssh_key, userdata, network, public_ipv4, from_file)
    body.setdefault("request_id", request_id or str(uuid.uuid4()))
    if duration is not None:
        body["expires_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=duration)).isoformat()
    if user_token:
        body["tokens"] = [{"jwt": user_token}]
    if reservation:
        body["reservation_id"] = reservation
    task = request_json("POST", f"{_bi(url)}/resources", tok, json=body, flags=CREATE_FLAGS)
    if not from_file:
        _say_whose_key(ssh_key, user_token)
    if wait:
        task = _follow(url, tok, task["id"], quiet=as_json)
    if as_json or not wait:
        _print(task, as_json, ["id", "status", "completed", "error", "resource_ids"], "Task")
    else:
        _say_how_to_reach(url, tok, task)
    if task["status"] == "failed":
        raise typer.Exit(1)


CREATE_FLAGS = {"expires_at": "--duration", "friendly_name": "--name", "disk_image_id": "--image",
                "flavor_id": "--flavor", "ssh_authorized_keys": "--ssh-key", "userdata": "--userdata",
                "network_interfaces": "--network", "reservation_id": "--reservation", "request_id": "--request-id"}


def _say_whose_key(ssh_keys: list[Path] | None, user_token: str | None) -> None:
    """Warn when nobody could log in: no --ssh-key, and no account key in --user-token."""
    if ssh_keys:
        return
    if claims(user_token).get("public_ssh_key"):
        typer.echo("using your account's SSH key (from --user-token)", err=True)
        return
    typer.secho("warning: no --ssh-key and no --user-token carrying your account's key: nobody can log in "
                "to it by SSH; pass --ssh-key ~/.ssh/id_ed25519.pub (make one with `ssh-keygen -t ed25519`)", err=True, fg="yellow")


def _say_how_to_reach(url: str, token: str, task: dict[str, Any]) -> None:
    """One line per created resource: its SSH command once running, or why it failed."""
    for rid in task.get("resource_ids") or []:
        row = request_json("GET", f"{_bi(url)}/resources/{rid}", token)
        if row["status"] == "running":
            how = row["ssh_command"] or "running (no SSH access: see `slices-blueprint show`)"
            typer.echo(f"{row['friendly_name']} is running: {how}")
        else:
            reason = f": {row['status_reason']}" if row.get("status_reason") else ""
            typer.echo(f"{row['friendly_name']} is {row['status']}{reason}")
    if task["status"] != "succeeded":
        typer.secho(f"error: {task['kind']} {task['status']}: {task.get('error') or 'see the lines above'}",
                    err=True, fg="red")


def _by_name(url: str, token: str, kind: str, ref: str) -> str:
    prefix = {"flavors": "flavor_", "disk-images": "image_"}[kind]
    if ref.startswith(prefix):
        return ref
    every = request_json("GET", f"{_bi(url)}/{kind}", token)
    rows = [r for r in every if r["friendly_name"] == ref]
    flag, command = {"flavors": ("--flavor", "flavors"), "disk-images": ("--image", "images")}[kind]
    if not rows:
        valid = ", ".join(sorted({r["friendly_name"] for r in every})) or "none: ask the site's admin"
        raise fail(f"{flag} {ref}: no such {kind.rstrip('s').replace('-', ' ')}; valid: {valid}")
    if len(rows) > 1:
        raise fail(f"{flag} {ref}: {len(rows)} {kind} have that name; give one's id "
                   f"(see `slices-blueprint {command}`)")
    return rows[0]["id"]


SSH_KEY_HINT = "give an existing public key file (e.g. ~/.ssh/id_ed25519.pub; make one with `ssh-keygen -t ed25519`)"


def _public_key(path: Path) -> str:
    """The public key in ``path`` (an --ssh-key); a private key is refused, never sent."""
    key = read_text(path, "--ssh-key", SSH_KEY_HINT).strip()
    if "PRIVATE KEY" in key:
        raise fail(f"--ssh-key {path}: this is a private key, which must not leave your machine; "
                   f"give its public half ({path}.pub)")
    return key


def _request_from_file(path: Path) -> dict[str, Any]:
    """The request in a --from-file: a list of resources, or a whole request with them."""
    loaded = load_document(path, "--from-file")
    if isinstance(loaded, list):
        return {"resources": loaded}
    if isinstance(loaded, dict) and isinstance(loaded.get("resources"), list):
        return loaded
    raise fail(f"--from-file {path}: expected a list of resources or a request with a 'resources' "
               f"list (JSON or YAML), found {type(loaded).__name__}")


def _create_body(url, token, names, image, flavor, ssh_keys, userdata, networks, public_ipv4, from_file) -> dict[str, Any]:
    if from_file:
        return _request_from_file(from_file)
    if not (names and image and flavor):
        missing = [flag for flag, given in (("--name", names), ("--image", image), ("--flavor", flavor)) if not given]
        raise fail(f"{', '.join(missing)} missing: give --name, --image and --flavor, or --from-file")
    keys = [_public_key(p) for p in ssh_keys or []]  # before any call: a wrong path fails at once
    user_data = read_text(userdata, "--userdata", "give the path of an existing cloud-init file") if userdata else None
    image_id, flavor_id = _by_name(url, token, "disk-images", image), _by_name(url, token, "flavors", flavor)
    return {"resources": [
        {"friendly_name": n, "disk_image_id": image_id, "flavor_id": flavor_id, "ssh_authorized_keys": keys,
         "userdata": user_data, "network_interfaces": networks or [], "public_ipv4": public_ipv4}
        for n in names
    ]}


def _follow(url: str, token: str, task_id: str, *, quiet: bool, timeout: float = 3600) -> dict[str, Any]:
    """Poll a task until it finishes, drawing a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  console=Console(stderr=True), disable=quiet) as bar:
        line = bar.add_task("waiting", total=100)
        while True:
            task = request_json("GET", f"{_bi(url)}/tasks/{task_id}", token)
            bar.update(line, completed=task["completed"], description=f"{task['kind']}: {task['status']}")
            if task["status"] in {"succeeded", "failed", "cancelled"} or time.monotonic() > deadline:
                return task
            time.sleep(1.0)


class ListFormat(str, Enum):
    table = "table"
    ansible = "ansible"


def list_(
    url: ServiceUrl, token: Token = None, all_: Annotated[bool, typer.Option("--all", help="Include deleted.")] = False,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table, or ansible: an Ansible inventory (YAML) of "
                                                             "the machines with their SSH host, port and user.")] = ListFormat.table,
    as_json: JsonOutput = False,
) -> None:
    """List resources (the experiment's with an experiment token): names, short ids (any
    command takes them), how to log in, and the time left."""
    rows = request_json("GET", f"{_bi(url)}/resources", resolve_token(token), params={"include_deleted": all_})
    if as_json:
        _print(rows, True, [])
        return
    if fmt is ListFormat.ansible:
        typer.echo(ansible_inventory(rows), nl=False)
        return
    from rich.table import Table

    now = dt.datetime.now(dt.UTC)
    table = Table(title="Resources")
    for header, wrap in (("name", False), ("id", False), ("type", False), ("status", False), ("ssh", False),
                         ("left", False), ("reason", True)):
        table.add_column(header, no_wrap=not wrap, overflow="fold")
    for row in rows:
        left = int((dt.datetime.fromisoformat(row["expires_at"]) - now).total_seconds())
        within = f" in {short_id(row['reservation_id'])}" if row.get("reservation_id") else ""
        table.add_row(row["friendly_name"], short_id(row["id"]), row["flavor_type"], row["status"],
                      row["ssh_command"] or "", f"{time_left(max(0, left))}{within}", row["status_reason"] or "")
    console().print(table)


def ssh_login(row: dict[str, Any]) -> tuple[str, int, str | None] | None:
    """Host, port and user to SSH to a resource (as the service reports them), or ``None``
    when it is not running or has no address."""
    access = row.get("access") or {}
    host = access.get("ssh_host") or access.get("public_ipv4") or access.get("ipv4")
    if row["status"] != "running" or not host:
        return None
    return host, int(access.get("ssh_port") or 22), access.get("ssh_user")


def ansible_inventory(rows: list[dict[str, Any]]) -> str:
    """An Ansible inventory (YAML) of the resources one can SSH to, grouped by flavor type."""
    import yaml

    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        if (login := ssh_login(row)) is None:
            continue
        host, port, user = login
        hostvars: dict[str, Any] = {"ansible_host": host, "ansible_port": port}
        if user:
            hostvars["ansible_user"] = user
        groups.setdefault(row["flavor_type"], {"hosts": {}})["hosts"][row["friendly_name"]] = hostvars
    return yaml.safe_dump({"all": {"children": groups}}, sort_keys=False)


def show(resource: str, url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """Show one resource (by id or name)."""
    tok = resolve_token(token)
    row = request_json("GET", f"{_bi(url)}/resources/{_resolve_resource(url, tok, resource)}", tok)
    if as_json:
        _print(row, True, [])
        return
    for key, value in row.items():
        console().print(f"[bold]{key}[/bold]: {value}")


def metrics(
    resource: str, url: ServiceUrl, token: Token = None,
    minutes: Annotated[int, typer.Option(help="How far back.")] = 10,
    as_json: JsonOutput = False,
) -> None:
    """A microVM's CPU, memory, network and disk over the last minutes (by id or name)."""
    tok = resolve_token(token)
    rid = _resolve_resource(url, tok, resource)
    answer = request_json("GET", f"{_bi(url)}/resources/{rid}/metrics?minutes={minutes}", tok)
    if as_json:
        _print(answer, True, [])
        return
    kib = 1024
    rows = [{
        "at": f"{point['at'][11:19]}", "cpu %": point["cpu_percent"], "memory MiB": point["memory_mib"],
        **{label: None if point[key] is None else round(point[key] / kib, 1) for label, key in (
            ("net in KiB/s", "net_rx_bytes_per_s"), ("net out KiB/s", "net_tx_bytes_per_s"),
            ("disk read KiB/s", "disk_read_bytes_per_s"), ("disk write KiB/s", "disk_write_bytes_per_s"))},
    } for point in answer["points"]]
    if not rows:
        typer.echo(f"no metrics in the last {minutes} minutes (the host sends them while the VM runs)")
        return
    _print(rows, False, list(rows[0]), title=f"{resource}: {answer['vcpus']} vCPU, last {minutes} min")


def wait(
    resource: str, url: ServiceUrl, token: Token = None,
    state: Annotated[str, typer.Option(help="State to wait for (default: any settled state).")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds.")] = 1800,
    as_json: JsonOutput = False,
) -> None:
    """Wait until a resource reaches a state; exits 1 on error or timeout."""
    tok = resolve_token(token)
    rid = _resolve_resource(url, tok, resource)
    deadline = time.monotonic() + timeout
    with console().status("waiting", spinner="dots") as spinner:
        while True:
            row = request_json("GET", f"{_bi(url)}/resources/{rid}", tok)
            spinner.update(f"{row['friendly_name']}: {row['status']}")
            done = row["status"] == state if state else row["status"] in FINAL_STATES
            if done or row["status"] == "error" or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    _print(row, as_json, ["id", "friendly_name", "status", "status_reason", "ssh_command"])
    if row["status"] == "error" or (state and row["status"] != state) or not done:
        raise typer.Exit(1)


def extend(
    resource: str, url: ServiceUrl, token: Token = None,
    hours: Annotated[float, typer.Option(help="Keep it at least this many hours from now (never shortens it).")] = 24,
    as_json: JsonOutput = False,
) -> None:
    """Extend a resource's lifetime: never shortened, capped at the experiment's expiry."""
    tok = resolve_token(token)
    rid = _resolve_resource(url, tok, resource)
    row = request_json("POST", f"{_bi(url)}/resources/{rid}/extend", tok, json={"duration_hours": hours})
    if as_json:
        _print(row, True, [])
        return
    typer.echo(f"{resource} expires {row['expires_at']} ({row['reason']})")


LOST_ON_RESET = {
    "k8s": "its container restarts from the image: everything written in it is lost",
}
LOST_ON_RESET_DEFAULT = ("its disk is re-imaged: everything written to it since it was created is lost, "
                         "and its SSH host key changes (ssh will warn of a changed key)")


def _confirm_reset(url: str, token: str, rid: str) -> None:
    """Ask before a reset, saying what is lost; without a terminal, refuse (--yes is needed)."""
    row = request_json("GET", f"{_bi(url)}/resources/{rid}", token)
    lost = LOST_ON_RESET.get(row["flavor_type"], LOST_ON_RESET_DEFAULT)
    if not sys.stdin.isatty():
        raise fail(f"reset of {row['friendly_name']} not confirmed ({lost}): pass --yes to reset without a question")
    if not typer.confirm(f"Reset {row['friendly_name']}? {lost[0].upper()}{lost[1:]}.", default=False):
        raise fail(f"reset of {row['friendly_name']} cancelled: nothing changed")


Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the task ends.")]


def _perform(method: str, suffix: str, resource: str, url: str, token: str | None, wait_: bool, as_json: bool,
             *, yes: bool = True) -> None:
    """Request an action on a resource (by id or name) and follow its task; ``yes=False``
    asks first (reset)."""
    tok = resolve_token(token)
    rid = _resolve_resource(url, tok, resource)
    if not yes:
        _confirm_reset(url, tok, rid)
    task = request_json(method, f"{_bi(url)}/resources/{rid}{suffix}", tok)
    if wait_:
        task = _follow(url, tok, task["id"], quiet=as_json)
    _print(task, as_json, ["id", "kind", "status", "completed", "message", "error"])
    if task["status"] == "failed":
        raise typer.Exit(1)


def _action(action: str, method: str, suffix: str):
    def command(resource: str, url: ServiceUrl, token: Token = None, wait_: Wait = True,
                as_json: JsonOutput = False) -> None:
        _perform(method, suffix, resource, url, token, wait_, as_json)

    command.__doc__ = f"{action.capitalize()} a resource (by id or name)."
    return command


def reset(resource: str, url: ServiceUrl, token: Token = None, wait_: Wait = True, as_json: JsonOutput = False,
          yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False) -> None:
    """Reset a resource (by id or name) to its image: its disk is re-imaged and its SSH host
    key changes (a pod's container restarts). Asks first; --yes does not."""
    _perform("POST", "/reset", resource, url, token, wait_, as_json, yes=yes)


def task(task_id: str, url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """Show a task."""
    row = request_json("GET", f"{_bi(url)}/tasks/{task_id}", resolve_token(token))
    _print(row, as_json, ["id", "kind", "status", "completed", "message", "error"])


def credentials_upload(
    kind: Annotated[str, typer.Argument(help="The provider's credential kind (an unknown one is refused, naming the known ones).")],
    file: Annotated[Path, typer.Argument(help="The credential file (clouds.yaml, kubeconfig).")],
    url: ServiceUrl, user_token: UserToken = None,
    select: Annotated[str | None, typer.Option("--select", help="The entry of the file to use (default: the only or current one).")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Check and store your credential file for a provider (encrypted; never shown again)."""
    row = request_json("PUT", f"{url}{API_PREFIX}/credentials/{kind}", resolve_token(user_token, "user_token"),
                       json={"content": read_text(file, "FILE", "give the path of your credential file"),
                             "selected": select})
    _print(row, as_json, ["kind", "selected", "last_check_ok", "last_checked_at"])


def credentials_list(url: ServiceUrl, user_token: UserToken = None, as_json: JsonOutput = False) -> None:
    """Your stored credentials and whether they worked."""
    rows = request_json("GET", f"{url}{API_PREFIX}/credentials", resolve_token(user_token, "user_token"))
    _print(rows, as_json, ["kind", "selected", "last_check_ok", "last_check_error", "updated_at"])


def credentials_delete(kind: str, url: ServiceUrl, user_token: UserToken = None) -> None:
    """Delete a stored credential."""
    request_json("DELETE", f"{url}{API_PREFIX}/credentials/{kind}", resolve_token(user_token, "user_token"))
    typer.echo(f"{kind} credential deleted")


def quota_rows(projects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per project and limit: what is used and what is allowed."""
    rows = []
    for project in projects:
        limits, usage = project["limits"], project["usage"]
        pairs = [(name, usage[name], limits[name]) for name in ("instances", "vcpus", "ram_mib")]
        types = sorted({*limits["flavor_types"], *usage["flavor_types"]})
        per_type = limits["flavor_types"]
        pairs += [(f"instances of {t}", usage["flavor_types"].get(t, 0), per_type.get(t)) for t in types]
        rows += [{"project": project["project_id"], "limit": name, "used": used,
                  "allowed": "unlimited" if allowed is None else allowed}
                 for name, used, allowed in pairs]
    return rows


def quota(url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """Your project's quota: what it uses and what it may use (all projects for admins)."""
    projects = request_json("GET", f"{url}{API_PREFIX}/quotas", resolve_token(token))
    if as_json:
        _print(projects, True, [])
        return
    _print(quota_rows(projects), False, ["project", "limit", "used", "allowed"], title="Quotas")


def register(app: typer.Typer) -> None:
    """Add the client commands to the root CLI."""
    for command in (flavors, images, create, show, wait, extend, metrics, task, quota, reset):
        app.command()(command)
    app.command("list")(list_)
    app.command("delete")(_action("delete", "DELETE", ""))
    for action in ("pause", "resume", "stop", "start"):
        app.command(action)(_action(action, "POST", f"/{action}"))
    creds = typer.Typer(no_args_is_help=True, help="Your provider credentials (one per provider that takes one).")
    creds.command("upload")(credentials_upload)
    creds.command("list")(credentials_list)
    creds.command("delete")(credentials_delete)
    app.add_typer(creds, name="credentials")
