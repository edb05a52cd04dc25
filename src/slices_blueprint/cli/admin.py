"""``slices-blueprint admin``: operator commands run on the service's machine."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="Operator commands (run where the service's settings are).")


@app.command("catalog-sync")
def catalog_sync(
    flavor_type: Annotated[str, typer.Argument(help="a flavor type this site offers (as in `slices-blueprint flavors`)")],
    data_dir: Annotated[Path | None, typer.Option(envvar="SLICES_BLUEPRINT_DATA_DIR")] = None,
) -> None:
    """Import the site-wide provider's images and flavors now; prints what changed."""
    from slices_blueprint.catalog.flows import sync_from_provider

    async def work(session, settings):
        return await sync_from_provider(session, settings, flavor_type, "system:cli")

    cluster_id, report = _run(work, data_dir)
    typer.echo(f"{flavor_type} catalog of {cluster_id}: {len(report.added)} added, {len(report.updated)} updated, "
               f"{len(report.hidden)} hidden, {len(report.unchanged)} unchanged")
    for label in report.added + report.updated + report.hidden:
        typer.echo(f"  {label}")


@app.command("rotate-keys")
def rotate_keys(data_dir: Annotated[Path | None, typer.Option(envvar="SLICES_BLUEPRINT_DATA_DIR")] = None) -> None:
    """Re-encrypt everything stored encrypted (uploaded credentials, host tokens) with the
    newest of SLICES_BLUEPRINT_ENCRYPTION_KEYS; the older keys can then be dropped."""
    from slices_blueprint.credentials.service import rotate_all
    from slices_blueprint.hosts.service import rotate_tokens

    async def work(session, settings):
        return await rotate_all(session, settings), await rotate_tokens(session, settings)

    credentials, hosts = _run(work, data_dir)
    typer.echo(f"re-encrypted {credentials} credentials and {hosts} host tokens "
               "with the newest key")


@app.command("host-enrol")
def host_enrol(
    name: Annotated[str, typer.Argument(help="the host's name (its agent's SLICES_AGENT_NAME)")],
    replace: Annotated[bool, typer.Option(
        help="give an already registered host a new identity")] = False,
    data_dir: Annotated[Path | None, typer.Option(envvar="SLICES_BLUEPRINT_DATA_DIR")] = None,
) -> None:
    """Issue a one-time enrolment token for a microVM host (printed once; it expires)."""
    from pydantic import ValidationError

    from slices_blueprint.core.errors import ProblemError
    from slices_blueprint.hosts.schemas import EnrolmentRequest
    from slices_blueprint.hosts.service import create_enrolment

    try:
        request = EnrolmentRequest(name=name, replace=replace)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"], param_hint="NAME") from exc

    async def work(session, settings):
        return await create_enrolment(session, settings, request.name, "system:cli",
                                      replace=request.replace)

    try:
        issued = _run(work, data_dir)
    except ProblemError as exc:
        typer.echo(f"refused: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"SLICES_AGENT_ENROLMENT_TOKEN={issued.token}")
    typer.echo(f"# for host {issued.name}, usable once, until "
               f"{issued.expires_at:%Y-%m-%d %H:%M} UTC", err=True)


equipment_app = typer.Typer(no_args_is_help=True, help="Equipment users can reserve (QKD device pairs, fibre spools, FPGAs...).")
app.add_typer(equipment_app, name="equipment")
DataDir = Annotated[Path | None, typer.Option(envvar="SLICES_BLUEPRINT_DATA_DIR")]


@equipment_app.command("add")
def equipment_add(
    name: Annotated[str, typer.Argument(help="unique at this site")],
    kind: Annotated[str, typer.Option(help='e.g. "qkd-device-pair", "fibre-spool", "fpga"')],
    attribute: Annotated[list[str] | None, typer.Option(
        "--attribute", "-a", help="KEY=VALUE (a JSON value or text), repeatable: -a length_km=25")] = None,
    site: Annotated[str | None, typer.Option(help="where it is (default: this site's id)")] = None,
    hidden: Annotated[bool, typer.Option(help="registered, not bookable yet")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register an item for booking."""
    from slices_blueprint.reservations import equipment
    from slices_blueprint.reservations.schemas import EquipmentCreate

    attributes = dict(_attribute(a) for a in attribute or [])
    body = _valid(lambda: EquipmentCreate(name=name, kind=kind, attributes=attributes, site=site, hidden=hidden))

    async def work(session, settings):
        return (await equipment.add(session, body, settings.site_id, "system:cli")).name

    typer.echo(f"equipment {_refused_or(work, data_dir)} added")


@equipment_app.command("list")
def equipment_list(data_dir: DataDir = None) -> None:
    """Every registered item, hidden ones too."""
    from slices_blueprint.reservations import equipment

    async def work(session, settings):
        return await equipment.list_equipment(session, include_hidden=True)

    for item in _run(work, data_dir):
        state = "hidden" if item.hidden else "bookable"
        typer.echo(f"{item.name}\t{item.kind}\t{item.site}\t{state}\t{json.dumps(item.attributes)}")


@equipment_app.command("hide")
def equipment_hide(
    name: str,
    show: Annotated[bool, typer.Option("--show", help="make it bookable again")] = False,
    data_dir: DataDir = None,
) -> None:
    """Take an item off the calendar for new bookings (its reservations stay)."""
    from slices_blueprint.core.errors import NotFound
    from slices_blueprint.reservations import equipment
    from slices_blueprint.reservations.schemas import EquipmentPatch

    async def work(session, settings):
        item = await equipment.by_name(session, name)
        if item is None:
            raise NotFound(f"no equipment named {name!r}")
        await equipment.update(session, item, EquipmentPatch(hidden=not show), "system:cli")

    _refused_or(work, data_dir)
    typer.echo(f"equipment {name} {'bookable' if show else 'hidden'}")


def _attribute(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"{text!r}: give KEY=VALUE", param_hint="--attribute")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _valid(build: Callable[[], T]) -> T:
    """``build()``, or a usage error naming the first invalid field."""
    from pydantic import ValidationError

    try:
        return build()
    except ValidationError as exc:
        error = exc.errors()[0]
        raise typer.BadParameter(f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from exc


def _refused_or(work: Callable[[Any, Any], Awaitable[T]], data_dir: Path | None) -> T:
    """``_run(work)``, or "refused: ..." and exit 1 on a problem the service would answer."""
    from slices_blueprint.core.errors import ProblemError

    try:
        return _run(work, data_dir)
    except ProblemError as exc:
        typer.echo(f"refused: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


def _run(work: Callable[[Any, Any], Awaitable[T]], data_dir: Path | None) -> T:
    """Run ``await work(session, settings)`` in one transaction against the service's database."""
    from slices_blueprint.core.bootstrap import prepare
    from slices_blueprint.core.config import Settings
    from slices_blueprint.core.database import Database

    settings = Settings(**({"data_dir": data_dir} if data_dir else {}))
    url = prepare(settings)

    async def main() -> T:
        db = Database(url)
        try:
            async with db.session() as session:
                return await work(session, settings)
        finally:
            await db.dispose()

    import asyncio

    return asyncio.run(main())
