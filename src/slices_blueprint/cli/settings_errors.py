"""Bad settings end the CLI with a short message naming each setting, not a traceback."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError


def describe(exc: ValidationError | SettingsError) -> str:
    """One line per bad setting (values are never shown: they may be secrets)."""
    if isinstance(exc, SettingsError):
        return (f"{exc}: list and table settings are JSON in environment variables, e.g. "
                "SLICES_BLUEPRINT_ADMIN_USER_IDS='[\"user_...\"]'")
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"{name}: {error['msg']}")
    return "\n".join(lines)


def run(app: typer.Typer) -> None:
    """Run the CLI app; bad settings exit with status 2 and a message on stderr."""
    try:
        app()
    except (ValidationError, SettingsError) as exc:
        print(f"invalid settings:\n{describe(exc)}", file=sys.stderr)
        sys.exit(2)
