"""What background jobs need from the process that runs them."""

from __future__ import annotations

from dataclasses import dataclass

from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database


@dataclass
class Runtime:
    """The settings and database a job works with."""

    settings: Settings
    db: Database
