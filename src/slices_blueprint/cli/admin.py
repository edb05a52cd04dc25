"""``slices-blueprint admin``: operator commands run on the service's machine."""

from __future__ import annotations

import asyncio
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

    return asyncio.run(main())
