"""Fixtures of the host security tests (imported by them): the service on a database of its
own, agent processes stopped at the end of each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, free_port, fresh_database, make_settings, start_server
from tests.security.agents import AgentProcess


@pytest.fixture
def host_service(pg_admin_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The service on its own database (no other test's hosts), heartbeats every second."""
    with fresh_database(pg_admin_url) as url:
        server = start_server(make_settings(tmp_path / "svc", url, free_port(),
                                            host_heartbeat_seconds=1), url, worker=False)
        yield server
        server.stop()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()
