"""``slices-blueprint dev``: tokens from the local development issuer (dev mode only)."""

from __future__ import annotations

from typing import Annotated

import typer

from slices_blueprint.cli.http import ServiceUrl, request_json

app = typer.Typer(no_args_is_help=True, help="Dev mode helpers (the service must run in dev mode).")


@app.command()
def token(
    url: ServiceUrl,
    user: Annotated[str, typer.Option(help="Dev user name (\"admin\" is a site admin).")] = "alice",
    project: Annotated[str, typer.Option(help="Dev project name.")] = "demo",
    experiment: Annotated[str | None, typer.Option(help="Give an experiment JWT for this experiment.")] = None,
    lifetime: Annotated[int, typer.Option(help="Token lifetime in seconds.")] = 3600,
    ssh_key: Annotated[str | None, typer.Option(help="Public SSH key to carry in a user token.")] = None,
) -> None:
    """Print a token signed by the service's local dev issuer.

    Without --experiment: a user id-token. With it: an experiment JWT.
    Use: export SLICES_BLUEPRINT_TOKEN=$(slices-blueprint dev token --experiment exp1)
    """
    body = {"user": user, "project": project, "experiment": experiment, "lifetime_s": lifetime, "ssh_key": ssh_key}
    answer = request_json("POST", f"{url}/dev/tokens", None, json=body,
                          flags={"lifetime_s": "--lifetime", "ssh_key": "--ssh-key", "user": "--user",
                                 "project": "--project", "experiment": "--experiment"})
    typer.echo(answer["token"])
