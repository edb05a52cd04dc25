"""The CLI as a real process, talking to the live service over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import Api


@pytest.fixture(scope="module")
def cli(live):
    def run(*args: str, token: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "SLICES_BLUEPRINT_URL": live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent"}
        env.pop("SLICES_BLUEPRINT_TOKEN", None)
        if token:
            env["SLICES_BLUEPRINT_TOKEN"] = token
        result = subprocess.run([sys.executable, "-m", "slices_blueprint", *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_full_client_flow(cli, live, http) -> None:
    api = Api(live, http)
    flavor, _ = api.test_double_catalog("cli")
    token = cli("dev", "token", "--experiment", "cli-exp").stdout.strip()
    assert token.count(".") == 2
    flavors = json.loads(cli("flavors", "--json", token=token).stdout)
    assert flavor in [f["id"] for f in flavors]
    table = cli("images", token=token).stdout
    assert "debian-cli" in table

    created = json.loads(cli("create", "--name", "c1", "--name", "c2", "--image", "debian-cli", "--flavor", "td.small-cli",
                             "--duration", "2", "--json", token=token).stdout)
    assert created["status"] == "succeeded" and len(created["resource_ids"]) == 2
    rows = json.loads(cli("list", "--json", token=token).stdout)
    assert sorted(r["friendly_name"] for r in rows) == ["c1", "c2"]
    assert all(r["status"] == "running" for r in rows)

    shown = json.loads(cli("show", "c1", "--json", token=token).stdout)
    assert shown["ssh_command"].startswith("ssh debian@")
    assert json.loads(cli("wait", "c1", "--state", "running", "--json", token=token).stdout)["status"] == "running"
    extended = json.loads(cli("extend", "c1", "--hours", "5", "--json", token=token).stdout)
    assert extended["capped"] is False
    assert json.loads(cli("reset", "c1", "--json", token=token).stdout)["status"] == "succeeded"
    assert json.loads(cli("stop", "c1", "--json", token=token).stdout)["status"] == "succeeded"
    assert json.loads(cli("wait", "c1", "--json", token=token).stdout)["status"] == "stopped"
    assert json.loads(cli("start", "c1", "--json", token=token).stdout)["status"] == "succeeded"
    no_metrics = cli("metrics", "c1", token=token, check=False)
    assert no_metrics.returncode == 1 and "test-double resources do not report any" in no_metrics.stderr
    assert json.loads(cli("delete", "c2", "--json", token=token).stdout)["status"] == "succeeded"
    assert [r["friendly_name"] for r in json.loads(cli("list", "--json", token=token).stdout)] == ["c1"]


def test_create_from_json_file(cli, live, http, tmp_path) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-file")
    spec = tmp_path / "req.json"
    spec.write_text(json.dumps([{"friendly_name": f"f{i}", "flavor_id": flavor, "disk_image_id": image} for i in range(3)]))
    created = json.loads(cli("create", "--from-file", str(spec), "--json", token=token).stdout)
    assert created["status"] == "succeeded" and len(created["subtasks"]) == 3


def test_errors_are_one_clear_line_and_exit_1(cli, live, http) -> None:
    api = Api(live, http)
    result = cli("list", token="not-a-token", check=False)
    assert result.returncode == 1
    assert "Unauthorized (401): bearer token is not a well-formed JWT" in result.stderr
    token = api.token("alice", "demo", "cli-err")
    result = cli("show", "no-such-thing", token=token, check=False)
    assert result.returncode == 1 and "no live resource named 'no-such-thing'" in result.stderr
    result = cli("create", "--name", "x", token=token, check=False)
    assert result.returncode != 0 and "--image" in result.stderr
