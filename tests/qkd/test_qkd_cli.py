"""``slices-blueprint qkd ...`` as a real process against the live service with KMEs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Api, one_error_line, wait_for
from tests.qkd.conftest import listening

NETWORK_YAML = """\
name: cli-net
nodes:
  - name: alice
    saes: [cli-a]
  - name: bob
    saes: [cli-b]
links:
  - between: [alice, bob]
    length_km: 20
"""

Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def cli(qkd_live) -> Cli:
    def run(*args: str, token: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "SLICES_BLUEPRINT_URL": qkd_live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
               "SLICES_BLUEPRINT_TOKEN": token, "COLUMNS": "200"}
        result = subprocess.run([sys.executable, "-m", "slices_blueprint", "qkd", *args], env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_network_lifecycle_through_the_cli(cli: Cli, api: Api, tmp_path: Path) -> None:
    token = api.token("alice", "qkd-cli", "qkd-cli")
    description = tmp_path / "net.yaml"
    description.write_text(NETWORK_YAML)
    created = json.loads(cli("create", "--from-file", str(description), "--json", token=token).stdout)
    assert [n["name"] for n in created["nodes"]] == ["alice", "bob"]
    for node in created["nodes"]:
        wait_for(lambda u=node["kme_url"]: listening(u), 20, f"KME {node['kme_id']} listening")

    listed = cli("list", token=token).stdout
    assert created["id"] in listed and "cli-net" in listed and "1/1" in listed  # its link generating

    shown = cli("show", "cli-net", token=token).stdout
    assert all(node["kme_url"] in shown and node["kme_id"] in shown for node in created["nodes"])
    assert "alice-bob" in shown and "generating" in shown

    stopped = cli("link", "set", "cli-net", "alice-bob", "--eavesdropper", "0.6", token=token).stdout
    assert "stopped" in stopped and "QBER" in stopped
    link = json.loads(cli("show", "cli-net", "--json", token=token).stdout)["links"][0]
    assert link["state"] == "stopped" and link["parameters"]["eavesdropper"] == 0.6

    out = tmp_path / "creds"
    wrote = cli("credentials", "cli-net", "cli-a", "--out", str(out), token=token).stdout
    assert "cli-a.key" in wrote
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "cli-a.crt", "cli-a.key", "kme.env"]
    assert stat.S_IMODE((out / "cli-a.key").stat().st_mode) == 0o600
    assert "BEGIN PRIVATE KEY" in (out / "cli-a.key").read_text()
    alice_url = next(n["kme_url"] for n in created["nodes"] if n["name"] == "alice")
    assert f"KME_URL={alice_url}\n" in (out / "kme.env").read_text()
    again = one_error_line(cli("credentials", "cli-net", "cli-a", "--out", str(tmp_path / "again"),
                               token=token, check=False))
    assert "once only" in again
    assert "BEGIN PRIVATE KEY" in (out / "cli-a.key").read_text()  # the first download is kept
    (out / "cli-b.key").write_text("someone else's")
    line = one_error_line(cli("credentials", "cli-net", "cli-b", "--out", str(out), token=token, check=False))
    assert "--out" in line and "cli-b.key exists" in line  # refused before the once-only download
    cli("credentials", "cli-net", "cli-b", "--out", str(tmp_path / "b"), token=token)

    deleted = json.loads(cli("delete", "cli-net", "--json", token=token).stdout)
    assert deleted["status"] == "deleted"
    assert "cli-net" not in cli("list", token=token).stdout


def test_bad_input_is_one_clear_line(cli: Cli, api: Api, tmp_path: Path) -> None:
    token = api.token("alice", "qkd-cli-bad", "qkd-cli-bad")
    missing = one_error_line(cli("create", "--from-file", str(tmp_path / "nope.yaml"), token=token, check=False))
    assert "--from-file" in missing and "nope.yaml" in missing

    malformed = tmp_path / "bad.yaml"
    malformed.write_text("name: [unclosed\nnodes: {")
    line = one_error_line(cli("create", "--from-file", str(malformed), token=token, check=False))
    assert "--from-file" in line and "YAML" in line

    not_a_network = tmp_path / "list.yaml"
    not_a_network.write_text("- just\n- a list\n")
    line = one_error_line(cli("create", "--from-file", str(not_a_network), token=token, check=False))
    assert "--from-file" in line

    description = tmp_path / "net.yaml"
    description.write_text(NETWORK_YAML.replace("cli-", "bad-"))
    cli("create", "--from-file", str(description), token=token)
    line = one_error_line(cli("link", "set", "bad-net", "alice-carol", "--eavesdropper", "0.5",
                              token=token, check=False))
    assert "alice-carol" in line and "alice-bob" in line  # the link asked for, and those there are

    line = one_error_line(cli("show", "no-such-net", token=token, check=False))
    assert "no-such-net" in line
