"""Low finding: NUL characters in text gave 500 (PostgreSQL cannot store them). Each attack
sends one where the reviewer found it; all must be a clear 422, and nothing is stored."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import LiveServer
from tests.helpers import Api

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"


@pytest.fixture(scope="module")
def api(live: LiveServer) -> Api:
    return Api(live, httpx.Client(timeout=30))


@pytest.fixture(scope="module")
def catalog(api: Api) -> tuple[str, str]:
    return api.test_double_catalog()


@pytest.mark.parametrize("field,value", [
    ("userdata", "#!/bin/sh\necho hi\x00there"),
    ("ssh_authorized_keys", [KEY + "\x00"]),
    ("request_config", {"ke\x00y": 1}),
    ("network_interfaces", ["lab\x00net"]),
    ("friendly_name", "vm\x00one"),
])
def test_nul_in_a_resource_request_is_422(api: Api, catalog: tuple[str, str], field: str, value: object) -> None:
    experiment = f"nul-{uuid.uuid4().hex[:6]}"
    token = api.token("alice", "demo", experiment)
    spec = {"friendly_name": "vm1", "flavor_id": catalog[0], "disk_image_id": catalog[1], field: value}
    answer = api.call("POST", "/resources", token, json={"request_id": str(uuid.uuid4()), "resources": [spec]})
    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.json()["detail"]
    assert api.ok("GET", "/resources", token) == []  # nothing was accepted


@pytest.mark.parametrize("query", ["limit=10%00", "after=%00", "state=running%00&timeout=1"])
def test_nul_in_a_query_parameter_is_422(api: Api, query: str) -> None:
    token = api.token("alice", "demo", "nulq")
    answer = api.call("GET", f"/resources?{query}", token)
    assert answer.status_code == 422 and "NUL" in answer.json()["detail"]


def test_an_escaped_backslash_is_not_a_nul(api: Api, catalog: tuple[str, str]) -> None:
    """The text ``\\u0000`` (a backslash, then u0000) is ordinary text in a shell script."""
    token = api.token("alice", "demo", f"nul-{uuid.uuid4().hex[:6]}")
    body = json.dumps({"request_id": str(uuid.uuid4()), "resources": [
        {"friendly_name": "vm1", "flavor_id": catalog[0], "disk_image_id": catalog[1],
         "userdata": "#!/bin/sh\nprintf '\\u0000'\n"}]})
    assert '\\\\u0000' in body
    answer = api.http.post(f"{api.live.bi}/resources", content=body,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text


def test_nul_in_a_form_is_422(live: LiveServer) -> None:
    answer = httpx.post(f"{live.url}/ui/login/dev", content=b"user=al%00ice&project=p&experiment=e",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 422
