"""The client commands' errors: one red line on stderr naming the flag and what to do, exit
status 1; never a traceback or a usage box."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` and answer the exit to raise (``raise fail(...)``)."""
    typer.secho(f"error: {message}", err=True, fg="red")
    return typer.Exit(1)


def read_text(path: Path, flag: str, hint: str = "give the path of an existing file") -> str:
    """The text of the file a flag names; a file that cannot be read is one line naming the
    flag, the reason and ``hint``."""
    try:
        return path.expanduser().read_text()
    except FileNotFoundError:
        raise fail(f"{flag} {path}: no such file; {hint}") from None
    except IsADirectoryError:
        raise fail(f"{flag} {path}: is a directory; {hint}") from None
    except UnicodeDecodeError:
        raise fail(f"{flag} {path}: not a text file (UTF-8); {hint}") from None
    except OSError as exc:
        raise fail(f"{flag} {path}: {exc.strerror or exc}; {hint}") from None


def load_document(path: Path, flag: str) -> Any:
    """The YAML or JSON document in the file a flag names (a ``.json`` file is read as strict
    JSON, any other as YAML, which JSON is part of); one that cannot be read or parsed is one
    line naming the flag and where the parser stopped."""
    import yaml

    text = read_text(path, flag, "give the path of an existing YAML or JSON file")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise fail(f"{flag} {path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise fail(f"{flag} {path}: not valid YAML or JSON{at} ({getattr(exc, 'problem', None) or exc})") from None
