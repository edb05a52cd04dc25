"""Shared fixtures: a fresh real PostgreSQL database per test session, the service over real
HTTP (uvicorn on a loopback port), and a real OIDC issuer on loopback for token tests.

The database is the machine's server (``SLICES_BLUEPRINT_TEST_PG``, default
postgresql://postgres@127.0.0.1:5432/postgres) unless ``SLICES_BLUEPRINT_TEST_DB=embedded``
or no server answers; then the embedded PostgreSQL the service itself uses.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from slices_blueprint.app import create_app
from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import start_embedded_postgres
from slices_blueprint.core.deps import BI_PREFIX
from slices_blueprint.core.logging import configure_logging
from slices_blueprint.providers.endpoints import EndpointPolicy
from tests.helpers import wait_for

pytest_plugins = ["tests.openstack.cloud_fixture", "tests.kubernetes.cluster_fixture"]
"""Session fixtures of the real clusters, registered once: shared by their own tests and tests/faults."""

SERVER_PG = os.environ.get("SLICES_BLUEPRINT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_INTEGRATION = os.environ.get("SLICES_BLUEPRINT_REQUIRE_INTEGRATION") == "1"


def integration_unavailable(reason: str) -> None:
    """Skip with a visible reason, or fail when CI requires every integration test to run."""
    if REQUIRE_INTEGRATION:
        pytest.fail(f"integration prerequisite missing (SLICES_BLUEPRINT_REQUIRE_INTEGRATION=1): {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_pg_answers() -> bool:
    try:
        with psycopg.connect(SERVER_PG, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A URL with rights to create databases: the machine's server or the embedded one.

    The embedded server's directory is outside pytest's numbered temp dirs (which other
    pytest runs may prune) and is removed at exit, after the server has stopped."""
    if os.environ.get("SLICES_BLUEPRINT_TEST_DB") != "embedded" and _server_pg_answers():
        return SERVER_PG
    directory = Path(tempfile.mkdtemp(prefix="sb-test-embedded-pg-"))
    atexit.register(shutil.rmtree, directory, True)  # runs after the server's own exit handler
    url = start_embedded_postgres(directory)
    return url.replace("/slices_blueprint?", "/postgres?")


def _with_dbname(url: str, name: str) -> str:
    head, sep, query = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"


@contextmanager
def fresh_database(pg_admin_url: str) -> Iterator[str]:
    """A new, migrated database, dropped afterwards."""
    name = f"sb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_dbname(pg_admin_url, name)
    migrations.upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """The test session's database (shared by the session's live server)."""
    with fresh_database(pg_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sb-data")


LOOPBACK_ALLOWED = ["127.0.0.0/8"]
"""The test OpenStack and Kubernetes listen on loopback, which uploaded credentials may only
reach when the site allows it (``uploaded_endpoints_allowed``)."""
LOOPBACK_POLICY = EndpointPolicy(LOOPBACK_ALLOWED)


def make_settings(data_dir: Path, database_url: str, port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "uploaded_endpoints_allowed": LOOPBACK_ALLOWED,
        "data_dir": data_dir,
        "database_url": database_url,
        "host": "127.0.0.1",
        "port": port,
        "dev_mode": True,
        "providers": ["test-double", "vm", "k8s", "microvm"],
        "site_id": "test-site1",
        "reaper_interval_seconds": 2,
        "reconcile_interval_seconds": 3600,
        "trusted_issuers": [],
        "task_max_attempts": 3,
        "qkd_kme_in_service": False,  # QKD tests run their own service with KMEs
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class LiveServer:
    """The service running on a loopback port, in this process (its own event loop)."""

    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def bi(self) -> str:
        return f"{self.url}{BI_PREFIX}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: Settings, database_url: str, *, worker: bool = True) -> LiveServer:
    app = create_app(settings, database_url, run_worker_inside=worker)
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)  # pages' event streams never end by themselves
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the test server did not start")
        return server.started

    wait_for(started, 30, "the test server starting", interval=0.05)
    return LiveServer(url=f"http://127.0.0.1:{settings.port}", settings=settings, server=server, thread=thread)


@contextmanager
def service_of_its_own(pg_admin_url: str, data_dir: Path, *, worker: bool = True,
                       **overrides: object) -> Iterator[LiveServer]:
    """The service on a fresh database of its own: what a test module does there (quotas it
    fills, limits it sets, a fuzzer's writes) stays there, and no other test's worker runs
    its jobs."""
    with fresh_database(pg_admin_url) as url:
        server = start_server(make_settings(data_dir, url, free_port(), **overrides), url, worker=worker)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def live(database_url: str, data_dir: Path) -> Iterator[LiveServer]:
    """The service with an in-process worker, dev mode on, the test-double provider enabled."""
    configure_logging("WARNING")
    server = start_server(make_settings(data_dir, database_url, free_port()), database_url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client
