"""``slices-blueprint admin``: operator commands run on the service's machine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Operator commands (run where the service's settings are).")


@app.command("rotate-keys")
def rotate_keys(data_dir: Annotated[Path | None, typer.Option(envvar="SLICES_BLUEPRINT_DATA_DIR")] = None) -> None:
    """Re-encrypt stored credentials with the newest of SLICES_BLUEPRINT_ENCRYPTION_KEYS."""
    from slices_blueprint.core.bootstrap import prepare
    from slices_blueprint.core.config import Settings
    from slices_blueprint.core.database import Database
    from slices_blueprint.credentials.service import rotate_all

    settings = Settings(**({"data_dir": data_dir} if data_dir else {}))
    url = prepare(settings)

    async def main() -> int:
        db = Database(url)
        async with db.session() as session:
            count = await rotate_all(session, settings)
        await db.dispose()
        return count

    typer.echo(f"re-encrypted {asyncio.run(main())} credentials with the newest key")
