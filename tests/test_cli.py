"""The CLI as a real process, talking to the live service over HTTP."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from tests.helpers import Api, one_error_line


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
    assert json.loads(cli("reset", "c1", "--yes", "--json", token=token).stdout)["status"] == "succeeded"
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


def test_extend_never_shortens_and_says_why(cli, live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-extend")
    api.wait_task(token, api.create(token, ["long"], flavor, image)["id"])  # the default 24 h
    before = api.ok("GET", "/resources", token)[0]["expires_at"]
    said = cli("extend", "long", "--hours", "8", token=token).stdout
    assert "is later than asked: unchanged" in said
    assert api.ok("GET", "/resources", token)[0]["expires_at"] == before


def in_terminal(live, args: list[str], answer: str, token: str) -> subprocess.CompletedProcess:
    """Run the CLI with a terminal as its input, typing ``answer`` to its question."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "SLICES_BLUEPRINT_URL": live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
           "SLICES_BLUEPRINT_TOKEN": token}
    try:
        os.write(controller, f"{answer}\n".encode())  # waits in the terminal until it is read
        return subprocess.run([sys.executable, "-m", "slices_blueprint", *args], env=env, stdin=terminal,
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        os.close(controller)
        os.close(terminal)


def test_reset_asks_first_and_says_what_is_lost(cli, live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-reset")
    task = api.create(token, ["precious"], flavor, image)
    api.wait_task(token, task["id"])
    rid = task["resource_ids"][0]

    def resets() -> int:
        return sum(e["action"] == "resource.reset" and e["outcome"] == "requested"
                   for e in api.ok("GET", f"/resources/{rid}/events", token))

    line = one_error_line(cli("reset", "precious", token=token, check=False))  # no terminal, no --yes
    assert "pass --yes" in line and "re-imaged" in line and "SSH host key changes" in line
    declined = in_terminal(live, ["reset", "precious"], "n", token)
    assert declined.returncode == 1 and "Reset precious? Its disk is re-imaged" in declined.stdout
    assert "reset of precious cancelled: nothing changed" in declined.stderr
    assert resets() == 0
    accepted = in_terminal(live, ["reset", "precious", "--json"], "y", token)
    assert accepted.returncode == 0, accepted.stderr
    assert resets() == 1
    assert json.loads(cli("reset", "precious", "--yes", "--json", token=token).stdout)["status"] == "succeeded"
    assert resets() == 2


def test_file_and_token_errors_are_one_line_naming_the_flag(cli, live, http, tmp_path) -> None:
    api = Api(live, http)
    api.test_double_catalog("cli-files")
    token = api.token("alice", "demo", "cli-files")
    base = ["create", "--name", "x", "--image", "debian-cli-files", "--flavor", "td.small-cli-files"]
    missing = tmp_path / "id_ed25519.pub"
    line = one_error_line(cli(*base, "--ssh-key", str(missing), token=token, check=False))
    assert line.startswith(f"error: --ssh-key {missing}: no such file;") and "ssh-keygen" in line
    private = tmp_path / "id_ed25519"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    line = one_error_line(cli(*base, "--ssh-key", str(private), token=token, check=False))
    assert "--ssh-key" in line and "private key" in line and f"{private}.pub" in line
    line = one_error_line(cli(*base, "--userdata", str(tmp_path / "cloud-init.yaml"), token=token, check=False))
    assert "--userdata" in line and "no such file" in line
    line = one_error_line(cli(*base, "--userdata", str(tmp_path), token=token, check=False))
    assert "--userdata" in line and "is a directory" in line

    line = one_error_line(cli("create", "--from-file", str(tmp_path / "nope.json"), token=token, check=False))
    assert "--from-file" in line and "nope.json: no such file" in line
    malformed = tmp_path / "bad.json"
    malformed.write_text('[{"friendly_name": "a",\n  "flavor_id": }]')
    line = one_error_line(cli("create", "--from-file", str(malformed), token=token, check=False))
    assert "--from-file" in line and "not valid JSON at line 2, column 16" in line
    malformed = tmp_path / "bad.yaml"
    malformed.write_text("- friendly_name: [unclosed\n")
    line = one_error_line(cli("create", "--from-file", str(malformed), token=token, check=False))
    assert "--from-file" in line and "not valid YAML or JSON at line 2" in line
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just words\n")
    line = one_error_line(cli("create", "--from-file", str(scalar), token=token, check=False))
    assert "--from-file" in line and "expected a list of resources" in line

    line = one_error_line(cli("create", "--name", "x", token=token, check=False))
    assert "--image, --flavor missing" in line
    line = one_error_line(cli("credentials", "upload", "clouds.yaml", str(tmp_path / "clouds.yaml"),
                              "--user-token", token, check=False))
    assert "FILE" in line and "no such file" in line
    line = one_error_line(cli("list", check=False))
    assert "--token missing" in line and "SLICES_BLUEPRINT_TOKEN" in line
    assert api.ok("GET", "/resources", token) == []  # nothing was sent
