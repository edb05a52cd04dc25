"""Outages of the test clouds' own processes: stop a service that ``openstack-aio.sh`` or
``k8s-apiserver.sh`` started, and start it again exactly as the script did.

The scripts run each service under ``setsid`` (its PID is its process group) and keep
``PID STARTTIME`` in ``<run dir>/<name>.pid``. :class:`ScriptService` reads the command line,
environment and working directory of the running process from ``/proc`` before it stops it,
starts the same command again in a new session appending to the same log, and rewrites the
PID file, so the script's own ``stop`` and ``status`` still find it. :func:`outage` always
brings the services back and waits until they answer: other tests use the same clouds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import wait_for

OPENSTACK_RUN, OPENSTACK_LOGS = Path("/run/openstack-aio"), Path("/var/log/openstack-aio")
K8S_RUN, K8S_LOGS = Path("/run/k8s-aio"), Path("/var/log/k8s-aio")
STOP_GRACE_S = 15.0


def _starttime(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (what the scripts store to tell a recycled PID)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


@dataclass(frozen=True)
class Launch:
    """How a service process was started."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


@dataclass
class ScriptService:
    """One service an AIO script started; ``answers`` tells whether it serves again."""

    name: str
    run_dir: Path
    log_dir: Path
    answers: Callable[[], bool]
    launch: Launch | None = None

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def pid(self) -> int | None:
        """The live process of the PID file, or None (absent, exited, or a recycled PID)."""
        try:
            pid_text, start = self.pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        return int(pid_text) if _starttime(int(pid_text)) == start else None

    def stop(self) -> None:
        """Remember how it was started, then TERM its process group (KILL after a grace)."""
        pid = self.pid()
        assert pid is not None, f"{self.name} is not running (no live PID in {self.pid_file})"
        proc = Path(f"/proc/{pid}")
        env = dict(
            entry.split("=", 1) for entry in proc.joinpath("environ").read_text().split("\0")
            if "=" in entry
        )
        argv = proc.joinpath("cmdline").read_text().rstrip("\0").split("\0")
        self.launch = Launch(argv=argv, env=env, cwd=os.readlink(proc / "cwd"))
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
            wait_for(lambda: self.pid() is None, 10, f"{self.name} exiting after SIGKILL")

    def start(self) -> None:
        """Start it again as it was started (nothing to do when it runs, or when :meth:`stop`
        found it not running)."""
        if self.pid() is not None or self.launch is None:
            return
        log = self.log_dir / f"{self.name}.log"
        with log.open("a") as out:
            out.write(f"=== {datetime.now(UTC).isoformat()} restarted by the fault tests: "
                      f"{' '.join(self.launch.argv)}\n")
            out.flush()
            process = subprocess.Popen(
                self.launch.argv, env=self.launch.env, cwd=self.launch.cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid} {_starttime(process.pid)}\n")


@dataclass
class Outage:
    """When the services went down and when they answered again (``time.monotonic()``)."""

    stopped_at: float = 0.0
    restarted_at: float = 0.0
    answering_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.answering_at - self.stopped_at


@contextmanager
def outage(*services: ScriptService, answer_within: float = 120) -> Iterator[Outage]:
    """The services stopped for the block's duration; on the way out, however the block
    ended, each is started again and must answer within ``answer_within`` seconds."""
    record = Outage(stopped_at=time.monotonic())
    stopped: list[ScriptService] = []
    try:
        for service in services:
            stopped.append(service)
            service.stop()
        yield record
    finally:
        record.restarted_at = time.monotonic()
        for service in stopped:
            service.start()
        for service in stopped:
            wait_for(service.answers, answer_within, f"{service.name} answering after its restart",
                     interval=0.5, ignoring=(Exception,))
        record.answering_at = time.monotonic()
