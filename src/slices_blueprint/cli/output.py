"""Where client commands print tables and status: rich is imported by the first command that
prints with it, not at start-up (``--help`` and plain-line commands start ~40 ms sooner)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    """The terminal (stdout) console, made once."""
    from rich.console import Console

    return Console()
