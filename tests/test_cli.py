"""The CLI as a real process, talking to the live service over HTTP."""

from __future__ import annotations

import json
import os
import pty
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.helpers import Api, one_error_line


@pytest.fixture(scope="module")
def cli(live):
    def run(*args: str, token: str | None = None, check: bool = True,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "SLICES_BLUEPRINT_URL": live.url, "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
               **(env_extra or {})}
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


SERVER_STACK = ("sqlalchemy", "fastapi", "starlette", "procrastinate", "uvicorn", "psycopg", "asyncpg", "rocrate",
                "pydantic_settings", "structlog")
LOADED_AFTER = """
import runpy, sys
sys.argv = ["slices-blueprint", *sys.argv[1:]]
try:
    runpy.run_module("slices_blueprint", run_name="__main__")
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--format", "ansible"]])
def test_client_commands_do_not_import_the_server_stack(live, http, args) -> None:
    """Start-up time (bench/bench_cli.py has the figures): a client command loads typer, rich
    and httpx, never the service's modules."""
    token = Api(live, http).token("alice", "demo", "cli-light")
    env = {**os.environ, "SLICES_BLUEPRINT_URL": live.url, "SLICES_BLUEPRINT_TOKEN": token,
           "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent"}
    result = subprocess.run([sys.executable, "-c", LOADED_AFTER, *args], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    modules = set(result.stderr.split())
    loaded = {name.split(".")[0] for name in modules}
    assert "typer" in loaded, result.stderr  # the probe did run the CLI
    assert not loaded & set(SERVER_STACK), sorted(loaded & set(SERVER_STACK))
    assert "typer.rich_utils" not in modules  # plain help: rendering it with rich costs ~70 ms a start
    if args == ["--help"]:  # nothing that only printing tables or calling the service needs
        assert "rich" not in loaded and "urllib.request" not in modules, sorted(m for m in modules if "rich" in m)


def test_usage_errors_are_one_line(cli) -> None:
    line = one_error_line(cli("list", "--bogus", check=False))
    assert line.startswith("error: No such option: --bogus") and "list --help" in line
    result = cli("show", check=False)
    assert result.returncode == 2 and one_error_line(result).startswith("error: Missing argument 'resource'")
    assert "No such command 'nosuch'" in one_error_line(cli("nosuch", check=False))
    assert "╭" not in cli("extend", "x", "--hours", "soon", check=False).stderr
    for group in ([], ["qkd"]):  # a group without a command shows its help
        bare = cli(*group, check=False)
        assert bare.returncode == 2 and "Usage:" in bare.stderr and "Commands:" in bare.stderr, bare


def test_create_waits_and_prints_how_to_log_in_or_why_it_failed(cli, live, http, tmp_path) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-wait")
    made = cli("create", "--name", "reach", "--image", image, "--flavor", flavor, token=token)
    assert "reach is running: ssh debian@198.51.100." in made.stdout
    assert "warning: no --ssh-key and no --user-token" in made.stderr  # nobody could log in
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0mN8oTq3cB7b9kM2c0d0bqk5M2y7n0JvQW9wV1e6cN alice@laptop"
    user_token = api.token("alice", "demo", ssh_key=key)
    made = cli("create", "--name", "keyed", "--image", image, "--flavor", flavor, "--user-token", user_token,
               token=token)
    assert "using your account's SSH key" in made.stderr and "warning" not in made.stderr
    spec = tmp_path / "broken.yaml"
    spec.write_text(yaml.safe_dump([{"friendly_name": "broken", "flavor_id": flavor, "disk_image_id": image,
                                     "request_config": {"fail": "no room on the rack"}}]))
    failed = cli("create", "--from-file", str(spec), token=token, check=False)
    assert failed.returncode == 1
    assert "broken is error: no room on the rack" in failed.stdout, failed.stdout
    queued = json.loads(cli("create", "--name", "later", "--image", image, "--flavor", flavor, "--no-wait", "--json",
                            token=token).stdout)
    assert queued["status"] in ("pending", "running", "succeeded")  # answered at once


def test_errors_name_the_flags_and_the_way_out(cli, live, http) -> None:
    api = Api(live, http)
    api.test_double_catalog("cli-flags")
    token = api.token("alice", "demo", "cli-flags")
    base = ["create", "--name", "f", "--image", "debian-cli-flags", "--flavor", "td.small-cli-flags"]
    line = one_error_line(cli(*base, "--duration", "100000", token=token, check=False))
    assert "--duration" in line and "expires_at" not in line and "experiment's expiry" in line
    line = one_error_line(cli(*base, "--duration", "-1", token=token, check=False))
    assert line.startswith("error: --duration -1:")
    line = one_error_line(cli("create", "--name", "f", "--image", "debian-cli-flags", "--flavor", "td.huge",
                              token=token, check=False))
    assert "--flavor td.huge: no such flavor; valid:" in line and "td.small-cli-flags" in line
    line = one_error_line(cli("dev", "token", "--lifetime", "5", check=False))
    assert "--lifetime" in line and "lifetime_s" not in line
    expired = api.token("alice", "demo", "cli-flags", lifetime_s=-600)
    line = one_error_line(cli("list", token=expired, check=False))
    assert "expired" in line and "slices-blueprint dev token --experiment cli-flags" in line


def test_list_fits_the_terminal_and_any_command_takes_a_short_id(cli, live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-narrow")
    rid = api.wait_task(token, api.create(token, ["narrow-one"], flavor, image)["id"])["resource_ids"][0]
    table = cli("list", token=token, env_extra={"COLUMNS": "100"}).stdout
    assert "narrow-one" in table and rid[-8:] in table and rid not in table
    assert "23h 5" in table  # the time left of the default 24 h
    assert max(len(line) for line in table.splitlines()) <= 100
    assert json.loads(cli("show", rid[-8:], "--json", token=token).stdout)["id"] == rid


def test_logs_follow_and_events(cli, live, http) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-logs")
    rid = api.wait_task(token, api.create(token, ["chatty"], flavor, image)["id"])["resource_ids"][0]
    assert cli("logs", "chatty", token=token).stdout == "chatty booted\n"
    console = live.settings.data_dir / "test-double" / f"td-{rid.rsplit('_', 1)[-1]}.console"
    env = {**os.environ, "SLICES_BLUEPRINT_URL": live.url, "SLICES_BLUEPRINT_TOKEN": token,
           "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent", "PYTHONUNBUFFERED": "1"}
    follow = subprocess.Popen([sys.executable, "-m", "slices_blueprint", "logs", "chatty", "--follow"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout.readline() == "chatty booted\n"
        with console.open("a") as out:
            out.write("login: \nkernel: eth0 up\n")
        assert follow.stdout.readline() == "login: \n"  # only the new lines, once
        assert follow.stdout.readline() == "kernel: eth0 up\n"
    finally:
        follow.send_signal(signal.SIGINT)
        assert follow.wait(30) == 130, follow.stderr.read()
    assert "Traceback" not in follow.stderr.read()
    events = json.loads(cli("events", "chatty", "--json", token=token).stdout)
    assert [e["action"] for e in events][-1] == "resource.create"
    assert "resource.create" in cli("events", "chatty", token=token, env_extra={"COLUMNS": "200"}).stdout


def _recorder(directory: Path, program: str) -> None:
    """A stand-in (a double) for ``program`` that prints the arguments it was given: no SSH
    server runs behind the test-double provider's addresses."""
    path = directory / program
    path.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "{program} $*"
    """))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_ssh_scp_and_ansible_inventory_by_name(cli, live, http, tmp_path) -> None:
    api = Api(live, http)
    flavor, image = api.test_double_catalog()
    token = api.token("alice", "demo", "cli-ssh")
    api.wait_task(token, api.create(token, ["web", "db"], flavor, image)["id"])
    rows = {r["friendly_name"]: r for r in json.loads(cli("list", "--json", token=token).stdout)}
    web = rows["web"]["access"]["ipv4"]
    assert rows["web"]["private_ipv4"] == web and rows["web"]["console_url"] is None

    inventory = yaml.safe_load(cli("list", "--format", "ansible", token=token).stdout)
    hosts = inventory["all"]["children"]["test-double"]["hosts"]
    assert hosts["web"] == {"ansible_host": web, "ansible_port": 22, "ansible_user": "debian"}
    assert set(hosts) == {"web", "db"}

    _recorder(tmp_path, "ssh")
    _recorder(tmp_path, "scp")
    path = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    assert cli("ssh", "web", "uname", "-a", token=token, env_extra=path).stdout == f"ssh -p 22 debian@{web} uname -a\n"
    copied = cli("scp", "notes.txt", "web:/tmp/", token=token, env_extra=path).stdout
    assert copied == f"scp -P 22 notes.txt debian@{web}:/tmp/\n"
    line = one_error_line(cli("ssh", "nope", token=token, check=False, env_extra=path))
    assert "no live resource named 'nope'" in line
