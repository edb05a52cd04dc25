"""``serve --detach`` and ``wait-ready``: a service in the background that is ready when the
command returns, so the next line of a script (a token, a create) works."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from slices_blueprint.cli.errors import fail
from slices_blueprint.cli.http import ServiceUrl, call

READY_POLL_SECONDS = 0.5
ReadyTimeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the service to be ready.")]


def ready_problem(url: str) -> str | None:
    """Why ``url``'s service is not ready (``None`` when it is)."""
    try:
        answer = call("GET", f"{url.rstrip('/')}/readyz", timeout=5.0)
    except OSError as exc:
        return f"not answering ({exc.__class__.__name__})"
    if answer.status == 200:
        return None
    try:
        return answer.json().get("detail") or answer.json().get("status")
    except (ValueError, AttributeError):
        return f"HTTP {answer.status}"


def wait_until_ready(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None,
                     log: Path | None = None) -> None:
    """Return once ``url/readyz`` answers 200 (with a spinner); fail when ``timeout`` passes
    or ``process`` (the service) exits, showing the end of its ``log``."""
    from rich.console import Console

    deadline = time.monotonic() + timeout
    with Console(stderr=True).status(f"waiting for {url} to be ready") as spinner:
        while (problem := ready_problem(url)) is not None:
            if process is not None and process.poll() is not None:
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-5:]) if log else ""
                raise fail(f"the service exited with status {process.returncode} before it was ready; "
                           f"its log {log} ends: {' | '.join(tail.splitlines())}")
            if time.monotonic() > deadline:
                raise fail(f"{url} is not ready after {timeout:g} s ({problem}); see its log"
                           + (f" {log}" if log else ""))
            spinner.update(f"waiting for {url} to be ready: {problem}")
            time.sleep(READY_POLL_SECONDS)


def start_detached(url: str, log: Path, timeout: float) -> None:
    """Run this very ``serve`` command (without --detach) in the background, its output in
    ``log``, and return once it is ready, saying how to stop it."""
    args = [a for a in sys.argv[1:] if a != "--detach"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "slices_blueprint", *args], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_until_ready(url, timeout, process, log)
    typer.echo(f"slices-blueprint is ready on {url} (pid {process.pid}, log {log}); "
               f"stop it with: kill {process.pid}")


def wait_ready(url: ServiceUrl, timeout: ReadyTimeout = 120) -> None:
    """Wait until the service answers ready (e.g. after `serve &`); exits 1 after --timeout."""
    wait_until_ready(url, timeout)
    typer.echo(f"{url} is ready")
