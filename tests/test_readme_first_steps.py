"""The README's first steps (dev mode), run as written, one line after the other: a microVM
on the local host, reachable by SSH, without waiting by hand between lines."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, fresh_database
from tests.helpers import wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.microvm


def first_steps(readme: str) -> str:
    """The bash block of "First steps (dev mode)" that starts the service."""
    section = readme.split("## First steps (dev mode)", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return next(block for block in blocks if "serve --dev" in block)


def processes_of(data_dir: Path) -> list[psutil.Process]:
    """The service (and its agent) started for ``data_dir``, found by their environment."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SLICES_BLUEPRINT_DATA_DIR") == str(data_dir):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture
def newcomer(pg_admin_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A newcomer's shell: a home with an SSH key, `slices-blueprint` on the PATH (this
    checkout), and a service port, data dir and database of the test's own."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("the local microVM host needs qemu-system-x86_64")
    home, bin_dir, data_dir = tmp_path / "home", tmp_path / "bin", tmp_path / "data"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    bin_dir.mkdir()
    command = bin_dir / "slices-blueprint"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m slices_blueprint "$@"\n')
    command.chmod(0o755)
    port = free_port()
    with fresh_database(pg_admin_url) as url:
        env = {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}",
               "SLICES_BLUEPRINT_DATABASE_URL": url, "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
               "SLICES_BLUEPRINT_PORT": str(port), "SLICES_BLUEPRINT_URL": f"http://127.0.0.1:{port}",
               "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent"}
        env.pop("SLICES_BLUEPRINT_TOKEN", None)
        try:
            yield env
        finally:
            cleanup = ("export SLICES_BLUEPRINT_TOKEN=$(slices-blueprint dev token --experiment exp1)"
                       " && slices-blueprint delete vm1")
            subprocess.run(["bash", "-c", cleanup], env=env, capture_output=True, timeout=300, check=False)
            for process in processes_of(data_dir):
                process.send_signal(signal.SIGTERM)
            wait_for(lambda: not processes_of(data_dir), 60, "the service stopping")


def test_first_steps_work_as_pasted(newcomer) -> None:
    lines = first_steps(README.read_text())
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", lines], env=newcomer, capture_output=True, text=True,
                            timeout=1200, check=False)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "vm1 is running: ssh -p " in said  # create waited and said how to log in
    assert re.search(r"ssh_command: ssh -p \d+ root@127\.0\.0\.1", said), said  # `show vm1`

    data_dir = Path(newcomer["SLICES_BLUEPRINT_DATA_DIR"])
    (service,) = [p for p in processes_of(data_dir) if "serve" in p.cmdline()]
    service.send_signal(signal.SIGINT)  # Ctrl-C
    service.wait(60)
    stopped = (data_dir / "serve.log").read_text()
    kept = re.search(r"its VMs keep running: vm1 \(ssh port \d+, pid (\d+)\).*to stop them now: kill (\d+)", stopped)
    assert kept and kept.group(1) == kept.group(2), stopped[-2000:]
    os.kill(int(kept.group(1)), signal.SIGTERM)
    wait_for(lambda: not psutil.pid_exists(int(kept.group(1))), 30, "the local VM stopping")
