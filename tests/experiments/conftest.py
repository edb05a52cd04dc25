"""A service of its own for experiment files, and an experiment holding resources, a QKD
network and a reservation of equipment."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slices_blueprint.core.deps import API_PREFIX
from tests.conftest import LiveServer, service_of_its_own
from tests.helpers import Api
from tests.qkd.conftest import kme_port_range

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExam user@lab"
NETWORK = {"name": "pair", "nodes": [{"name": "alice", "saes": ["alice-app"]}, {"name": "bob", "saes": ["bob-app"]}],
           "links": [{"between": ["alice", "bob"], "length_km": 25}]}


@pytest.fixture(scope="module")
def exp_live(pg_admin_url: str, data_dir: Path) -> Iterator[LiveServer]:
    with service_of_its_own(pg_admin_url, data_dir, qkd_kme_ports=kme_port_range()) as server:
        yield server


class ExpApi(Api):
    """``Api`` with the experiment file's routes and an experiment ready to export."""

    def own(self, method: str, path: str, token: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.live.url}{API_PREFIX}{path}",
                                     headers={"Authorization": f"Bearer {token}"}, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()

    def experiment(self, flavor: str, image: str) -> str:
        """A new experiment with two resources, a QKD network and a reservation; its token."""
        unique = uuid.uuid4().hex[:8]
        token = self.token("alice", "demo", f"exp-{unique}", experiment_days=90)
        created = self.ok("POST", "/resources", token, 202, json={"request_id": str(uuid.uuid4()), "resources": [
            {"friendly_name": "web", "flavor_id": flavor, "disk_image_id": image, "userdata": "#cloud-config\n{}\n",
             "ssh_authorized_keys": [SSH_KEY], "network_interfaces": ["lab"], "request_config": {"note": "a"}},
            {"friendly_name": "db", "flavor_id": flavor, "disk_image_id": image}]})
        assert self.wait_task(token, created["id"])["status"] == "succeeded"
        self.ok("POST", "/qkd-networks", token, 201, json=NETWORK)
        self.own("POST", "/equipment", self.token("admin"), 201, json={"kind": f"spool-{unique}", "name": f"spool-{unique}"})
        start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=2)
        self.own("POST", "/reservations", token, 201, json={
            "equipment": [f"spool-{unique}"], "starts_at": start.isoformat(), "hours": 3})
        return token

    def export(self, token: str) -> dict:
        return self.ok("GET", "/experiment/export", token)

    def apply(self, token: str, file: dict, timeout: float = 60) -> dict:
        applied = self.ok("POST", "/experiment/apply", token, 202, json=file)
        assert self.wait_task(token, applied["task"]["id"], timeout)["status"] == "succeeded"
        return applied

    def delete_everything(self, token: str, timeout: float = 60) -> None:
        """Delete the experiment's resources and QKD networks, cancel its reservations."""
        for resource in self.ok("GET", "/resources", token):
            task = self.ok("DELETE", f"/resources/{resource['id']}", token, 202)
            assert self.wait_task(token, task["id"], timeout)["status"] == "succeeded"
        for network in self.ok("GET", "/qkd-networks", token):
            self.ok("DELETE", f"/qkd-networks/{network['id']}", token)
        for reservation in self.own("GET", "/reservations", token):
            self.own("POST", f"/reservations/{reservation['id']}/cancel", token, json={})

    def plan(self, token: str, file: dict) -> dict:
        return self.ok("POST", "/experiment/plan", token, json=file)


@pytest.fixture(scope="module")
def api(exp_live: LiveServer, http: httpx.Client) -> ExpApi:
    return ExpApi(exp_live, http)


@pytest.fixture(scope="module")
def catalog(api: ExpApi) -> tuple[str, str]:
    return api.test_double_catalog("exp")
