"""The CLI's way out: bad settings end it with a short message naming each setting, and a
usage error (an unknown option, a missing argument) with one line; never a traceback or a box."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError


def describe(exc: ValidationError | SettingsError) -> str:
    """One line per bad setting (values are never shown: they may be secrets)."""
    from pydantic_settings import SettingsError

    if isinstance(exc, SettingsError):
        return (f"{exc}: list and table settings are JSON in environment variables, e.g. "
                "SLICES_BLUEPRINT_ADMIN_USER_IDS='[\"user_...\"]'")
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"{name}: {error['msg']}")
    return "\n".join(lines)


def is_settings_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad settings (pydantic is imported only once something failed:
    the client commands never load it)."""
    if "pydantic" not in sys.modules:
        return False
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    return isinstance(exc, ValidationError | SettingsError)


def usage_error_line(exc: BaseException) -> str | None:
    """One line for a command-line usage error (Click's, as Typer raises it), naming the
    command's ``--help``; ``None`` for any other exception."""
    format_message = getattr(exc, "format_message", None)
    if not callable(format_message) or not isinstance(getattr(exc, "exit_code", None), int):
        return None
    ctx = getattr(exc, "ctx", None)
    see = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"error: {format_message().rstrip('.')}{see}"


def run(app: typer.Typer) -> None:
    """Run the CLI app: bad settings exit with status 2 and a message on stderr; a usage
    error is one line on stderr with Click's status (2)."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.secho("error: aborted", err=True, fg="red")
        sys.exit(1)
    except Exception as exc:
        if is_settings_error(exc):
            print(f"invalid settings:\n{describe(exc)}", file=sys.stderr)
            sys.exit(2)
        if exc.__class__.__name__ == "NoArgsIsHelpError":  # a group without a command: its help
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        line = usage_error_line(exc)
        if line is None:
            raise
        typer.secho(line, err=True, fg="red")
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)
