"""``slices-blueprint agent``: run the host agent, build the default image, reap orphans.

Heavy modules are imported inside the commands so that mounting this group keeps the main
CLI quick to start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from slices_blueprint.agent.config import AgentSettings

agent_app = typer.Typer(help="The microVM host agent (run one per host, as root).",
                        no_args_is_help=True)


def run_agent(settings: AgentSettings | None = None) -> None:
    """Serve the agent API over HTTPS until interrupted (VMs keep running and are re-adopted
    later)."""
    import uvicorn

    from slices_blueprint.agent.app import create_agent_app
    from slices_blueprint.agent.config import AgentSettings

    settings = settings or AgentSettings()
    app = create_agent_app(settings)
    certificate = app.state.certificate
    uvicorn.run(app, host=settings.listen_host, port=settings.listen_port, log_level="info",
                ssl_certfile=str(certificate.cert_path), ssl_keyfile=str(certificate.key_path))


@agent_app.command("run")
def run_command(
    listen_host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    listen_port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    service_url: Annotated[str | None, typer.Option(help="register with this service")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="state, cache and VM disks")] = None,
) -> None:
    """Run the agent; every setting also reads SLICES_AGENT_<NAME> from the environment."""
    from slices_blueprint.agent.config import AgentSettings

    overrides = {k: v for k, v in {"listen_host": listen_host, "listen_port": listen_port,
                                   "service_url": service_url, "data_dir": data_dir}.items()
                 if v is not None}
    run_agent(AgentSettings(**overrides))


@agent_app.command("build-image")
def build_image_command(
    dest: Annotated[Path | None, typer.Argument(help="cache folder")] = None,
) -> None:
    """Build (or show the cached) default image: Debian cloud kernel + busybox + dropbear."""
    from slices_blueprint.agent.config import AgentSettings
    from slices_blueprint.agent.default_image import build_default_image

    image = build_default_image(dest or AgentSettings().cache_dir / "default")
    typer.echo(json.dumps({k: str(v) for k, v in image.__dict__.items()}, indent=2))


@agent_app.command("reap")
def reap_command() -> None:
    """Re-adopt running VMs and remove orphans (processes, TAPs, stray folders), then exit."""
    import asyncio

    from slices_blueprint.agent.app import build_vmm
    from slices_blueprint.agent.config import AgentSettings
    from slices_blueprint.agent.manager import VMManager

    settings = AgentSettings()
    report = asyncio.run(VMManager(settings, build_vmm(settings)).startup())
    typer.echo(json.dumps(report, indent=2))
