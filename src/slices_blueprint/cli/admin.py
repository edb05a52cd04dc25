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
    flavor_type: Annotated[str, typer.Argument(help="vm, k8s or microvm")],
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
    """Re-encrypt stored credentials with the newest of SLICES_BLUEPRINT_ENCRYPTION_KEYS."""
    from slices_blueprint.credentials.service import rotate_all

    typer.echo(f"re-encrypted {_run(rotate_all, data_dir)} credentials with the newest key")


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
