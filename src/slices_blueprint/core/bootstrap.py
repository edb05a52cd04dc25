"""Start-up shared by ``serve``, ``worker`` and tests: settings -> database -> migrations."""

from __future__ import annotations

import structlog

from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import resolve_database_url
from slices_blueprint.core.logging import configure_logging

log = structlog.get_logger(__name__)


def prepare(settings: Settings) -> str:
    """Configure logging, start the embedded PostgreSQL if needed, apply migrations;
    returns the database URL."""
    configure_logging(settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_database_url(settings)
    migrations.upgrade(url)
    log.info("database.ready", embedded=settings.uses_embedded_db)
    return url
