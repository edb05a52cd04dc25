"""Start-up shared by ``serve``, ``worker`` and tests: settings -> database -> migrations."""

from __future__ import annotations

import signal
import sys

import structlog

from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import resolve_database_url
from slices_blueprint.core.logging import configure_logging

log = structlog.get_logger(__name__)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(0)  # a requested stop is a clean exit (systemd counts 143 as a failure)


def prepare(settings: Settings) -> str:
    """Configure logging, start the embedded PostgreSQL if needed, apply migrations;
    returns the database URL.

    SIGTERM becomes a normal exit so that exit handlers run: the embedded PostgreSQL stops
    with the last process using it (uvicorn re-raises the signal it caught once it is done).
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configure_logging(settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_database_url(settings)
    migrations.upgrade(url)
    log.info("database.ready", embedded=settings.uses_embedded_db)
    return url
