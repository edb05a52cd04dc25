"""Fault tests on microVM hosts: the service (real PostgreSQL, API, in-process worker) with
one agent that registered itself from its own network namespace (see tests/microvm/conftest.py),
and the helpers to watch the host's status and run the reconciler at a chosen moment."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from slices_blueprint.core.database import Database
from slices_blueprint.core.runtime import Runtime
from slices_blueprint.resources.scheduled import reconcile
from tests.conftest import LiveServer, free_port, fresh_database, make_settings, start_server
from tests.helpers import Api, wait_for
from tests.microvm.conftest import Relay, TestHost, make_host  # noqa: F401  (the fixture)
from tests.microvm.test_service_microvm import enrol, microvm_catalog

HOST_LOST_AFTER_S = 6  # heartbeats every second: a host silent this long is lost


@dataclass
class Site:
    """The service, its admin, and its registered microVM hosts (``host`` the first); an
    agent restarts with the settings it first ran with (its enrolment is used by then, so it
    registers with its own token)."""

    server: LiveServer
    api: Api
    hosts: list[TestHost]
    agent_settings: dict[str, dict[str, str]]  # by host name
    admin: str = field(init=False)

    def __post_init__(self) -> None:
        self.admin = self.api.token("admin")

    @property
    def host(self) -> TestHost:
        return self.hosts[0]

    def host_row(self, host: TestHost | None = None) -> dict:
        name = (host or self.host).ns
        rows = self.api.http.get(f"{self.server.url}/api/v1/hosts",
                                 headers={"Authorization": f"Bearer {self.admin}"}).json()
        (row,) = [h for h in rows if h["name"] == name]
        return row

    def wait_host(self, status: str, timeout: float, host: TestHost | None = None) -> float:
        """Wait until the host's status is ``status``; answer the seconds it took."""
        clock = time.monotonic()
        wait_for(lambda: self.host_row(host)["status"] == status, timeout,
                 lambda: f"host {(host or self.host).ns} {status}: {self.host_row(host)['status']}")
        return time.monotonic() - clock

    def restart_agent(self, host: TestHost | None = None) -> None:
        host = host or self.host
        host.start_agent(**self.agent_settings[host.ns])

    def catalog(self) -> tuple[str, str]:
        return microvm_catalog(self.api, self.admin)

    def reconcile(self) -> dict[str, int]:
        """One pass of the real reconciler (its periodic job runs hourly in tests)."""
        async def once() -> dict[str, int]:
            db = Database(self.server.settings.database_url)
            try:
                return await reconcile(Runtime(settings=self.server.settings, db=db))
            finally:
                await db.dispose()

        return asyncio.run(once())


@pytest.fixture
def make_site(pg_admin_url: str, tmp_path: Path, http: httpx.Client, make_host) -> Iterator:  # noqa: F811
    """Makes the site: a service of its own (own database: no other test's worker takes its
    jobs) with one registered host; a create retries transient failures up to 5 times
    (2+4+8+16 s). ``prepare(host)`` runs before the agent first starts (e.g. to mount its
    data directory)."""
    with contextlib.ExitStack() as stack:
        def make(prepare: Callable[[TestHost], None] | None = None, hosts: int = 1) -> Site:
            url = stack.enter_context(fresh_database(pg_admin_url))
            settings = make_settings(
                tmp_path / "svc", url, free_port(), host_heartbeat_seconds=1,
                host_lost_after_seconds=HOST_LOST_AFTER_S, task_max_attempts=5,
                placement_wait_seconds=120, dev_allowed_networks=["10.250.0.0/16"])
            server = start_server(settings, url)
            stack.callback(server.stop)
            site = Site(server, Api(server, http), [], {})
            for _ in range(hosts):
                host = make_host.prepare()
                if prepare:
                    prepare(host)
                relay = Relay((host.gateway, settings.port), ("127.0.0.1", settings.port))
                stack.callback(relay.close)
                site.agent_settings[host.ns] = {
                    "service_url": f"http://{host.gateway}:{settings.port}",
                    "enrolment_token": enrol(http, server.url, site.admin, host.ns)}
                site.hosts.append(host)
                site.restart_agent(host)
                wait_for(lambda: site.host_row(host)["metrics"], 30,  # noqa: B023 (waited at once)
                         "registration and a heartbeat", ignoring=(ValueError,))
            return site

        yield make


@pytest.fixture
def microvm_site(make_site) -> Site:
    return make_site()
