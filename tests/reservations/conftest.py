"""A service of its own for reservations (its clock ticking every second), a client for our
own API, and helpers to book on a calendar far enough ahead that tests do not meet."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from slices_blueprint.core.deps import API_PREFIX
from tests.conftest import LiveServer, service_of_its_own
from tests.helpers import Api


@pytest.fixture(scope="module")
def resv_live(pg_admin_url: str, data_dir: Path) -> Iterator[LiveServer]:
    with service_of_its_own(pg_admin_url, data_dir, reaper_interval_seconds=1,
                            reservation_warning_minutes=0.05) as server:
        yield server


class OwnApi(Api):
    """``Api`` on our own routes (``/api/v1``)."""

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, f"{self.live.url}{API_PREFIX}{path}", headers=headers, **kwargs)

    def token(self, user: str = "alice", project: str = "demo", experiment: str | None = None, **kw: Any) -> str:
        """A dev token; experiments last 90 days (the tests book weeks ahead)."""
        return super().token(user, project, experiment, **{"experiment_days": 90, **kw})

    def equipment(self, kind: str, *names: str, **attributes: Any) -> list[dict]:
        return [self.ok("POST", "/equipment", self.token("admin"), 201,
                        json={"kind": kind, "name": name, "attributes": attributes}) for name in names]

    def reserve(self, token: str, start: dt.datetime, hours: float, status: int = 201, **ask: Any) -> dict:
        return self.ok("POST", "/reservations", token, status,
                       json={"starts_at": start.isoformat(), "hours": hours, **ask})


@pytest.fixture(scope="module")
def api(resv_live: LiveServer, http: httpx.Client) -> OwnApi:
    return OwnApi(resv_live, http)


@pytest.fixture(scope="module")
def bi(resv_live: LiveServer, http: httpx.Client) -> Api:
    """A client of the Blueprint Interface routes (resources, tasks, QKD networks)."""
    return Api(resv_live, http)


@pytest.fixture
def unique() -> str:
    """A suffix for names and kinds of one test."""
    return uuid.uuid4().hex[:8]


def day(n: int, minutes: int = 0) -> dt.datetime:
    """Midnight UTC ``n`` days from now, plus ``minutes``: each test books its own day."""
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=n, minutes=minutes)


def add_host(database_url: str, vcpus: int, memory_mib: int) -> None:
    """A registered microVM host's row, as registration leaves it (capacity is all it adds here)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hosts (id, name, url, status, vcpus, memory_mib, disk_free_mib, vms_running, vcpus_used,"
            " memory_used_mib, vmm, network_mode, metrics, labels) VALUES (%s, %s, 'https://127.0.0.1:1', 'active',"
            " %s, %s, 0, 0, 0, 0, 'qemu', 'user', '{}', '{}')",
            (uuid.uuid4(), f"host-{uuid.uuid4().hex[:6]}", vcpus, memory_mib))
