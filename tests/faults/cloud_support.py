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
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import wait_for

OPENSTACK_RUN, OPENSTACK_LOGS = Path("/run/openstack-aio"), Path("/var/log/openstack-aio")
K8S_RUN, K8S_LOGS = Path("/run/k8s-aio"), Path("/var/log/k8s-aio")
STOP_GRACE_S = 15.0


def _starttime(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (what the scripts store to tell a recycled PID); None
    when the process is gone, or has exited and awaits its parent (this process, for a
    service restarted here: it is reaped then)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields after "(comm)": state is field 3
    if fields[0] == "Z":
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return fields[19]


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
    started_at: datetime | None = None  # when :meth:`start` last started it (UTC)

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
        self.started_at = datetime.now(UTC)
        with log.open("a") as out:
            out.write(f"=== {self.started_at.isoformat()} restarted by the fault tests: "
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
    """Services taken down (:meth:`take_down`), and when (``time.monotonic()``): the first one
    went down, the last one, and when all answered again."""

    stopped: list[ScriptService] = field(default_factory=list)
    stopped_at: float = 0.0
    last_stopped_at: float = 0.0
    answering_at: float = 0.0

    def take_down(self, *services: ScriptService) -> None:
        for service in services:
            self.stopped.append(service)  # first: a failed stop is still started again
            service.stop()
        self.last_stopped_at = time.monotonic()
        self.stopped_at = self.stopped_at or self.last_stopped_at


@contextmanager
def outage(*services: ScriptService, answer_within: float = 120) -> Iterator[Outage]:
    """The services stopped for the block's duration (and any the block takes down with
    :meth:`Outage.take_down`); on the way out, however the block ended, all are started again
    together and each must answer within ``answer_within`` seconds."""
    record = Outage()
    try:
        record.take_down(*services)
        yield record
    finally:
        for service in record.stopped:
            service.start()
        for service in record.stopped:
            wait_for(service.answers, answer_within, f"{service.name} answering after its restart",
                     interval=0.5, ignoring=(Exception,))
        record.answering_at = time.monotonic()
