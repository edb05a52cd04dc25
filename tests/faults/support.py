"""Shared machinery of the fault and load tests (issue 15): a PostgreSQL cluster of the
test's own (to restart without touching the machine's server), the service as operators run
it (``serve --no-worker`` API processes and ``worker`` processes on one database), clients
that behave as a well-written one does (retry on ``Retry-After``, fail over to another API
process), and the ledger every case ends with: accepted, final, lost, duplicated, orphaned.

Provider: the TEST DOUBLE (its nodes are files under ``data_dir/test-double``, each counting
how often it was really created), the stand-in the foundation's tests use for a cloud.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from slices_blueprint.core.config import Settings
from slices_blueprint.core.deps import BI_PREFIX
from slices_blueprint.core.dev_issuer import mint_dev_token
from slices_blueprint.resources.states import FINAL
from slices_blueprint.tasks.service import TERMINAL
from tests.conftest import free_port, integration_unavailable, make_settings
from tests.helpers import wait_answering, wait_for

SITE_ID = "faults-site"
PG_BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))


# --- a PostgreSQL of the test's own ---------------------------------------------------------

class OwnPostgres:
    """A PostgreSQL cluster made from Debian's binaries in a temp dir, on a free loopback
    port (run as ``postgres`` when we are root, which initdb refuses), so a test can stop and
    start it while others keep using the machine's server."""

    def __init__(self) -> None:
        if not PG_BINARIES:
            raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(PG_BINARIES[-1])
        self.root = Path(tempfile.mkdtemp(prefix="sb-faults-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{tool} {args}: {done.stdout}{done.stderr}"

    def init(self) -> None:
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 400\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are ended, as in a restart or failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with_server = (self.data / "postmaster.pid").exists()
        if with_server:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A started cluster of the test's own, removed afterwards (``.ci/run`` leaves
    ``tests/faults`` out of its pass on the embedded PostgreSQL, which these would not use)."""
    if not PG_BINARIES:
        integration_unavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin) for a cluster of our own")
    server = OwnPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()



# --- the service's processes -----------------------------------------------------------------

@dataclass
class Site:
    """The service as operators scale it out: API processes (``serve --no-worker``) and
    worker processes on one database and one data directory, behind one public URL (tokens
    name it as their audience, so any API process accepts them)."""

    data_dir: Path
    database_url: str
    settings: Settings = field(init=False)
    apis: dict[str, subprocess.Popen] = field(default_factory=dict)  # base URL -> process
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    public_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.settings = make_settings(self.data_dir, self.database_url, self.public_port, providers=["test-double"],
                                      site_id=SITE_ID, public_url=f"http://127.0.0.1:{self.public_port}")

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "SLICES_BLUEPRINT_DATA_DIR": str(self.data_dir),
                "SLICES_BLUEPRINT_DEV_MODE": "true", "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]',
                "SLICES_BLUEPRINT_SITE_ID": SITE_ID, "SLICES_BLUEPRINT_LOG_LEVEL": "INFO",
                "SLICES_BLUEPRINT_PUBLIC_URL": self.settings.service_url,
                "SLICES_BLUEPRINT_MAX_WAITS_PER_EXPERIMENT": "50"}

    def log(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "slices_blueprint", *argv], env=self.env(),
                                stdout=self.log(name).open("a"), stderr=subprocess.STDOUT)

    def start_api(self, port: int | None = None) -> str:
        """Start one API process (the first on the public port); answer its base URL once it
        answers."""
        port = port or (self.public_port if not self.apis else free_port())
        name = f"api-{port}"
        process = self._spawn(name, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_answering(f"{base}/healthz", process, self.log(name), 90)
        self.apis[base] = process
        return base

    def start_worker(self, name: str, concurrency: int = 4, *, wait: bool = True) -> subprocess.Popen:
        """Start a worker process (logging to ``name``.log); with ``wait``, answer once it works."""
        log = self.log(name)
        started_before = log.read_text().count("worker.started") if log.exists() else 0
        process = self._spawn(name, "worker", "--concurrency", str(concurrency), "--name", name)
        self.workers[name] = process
        if wait:
            def working() -> bool:
                assert process.poll() is None, f"{name} exited: {log.read_text()[-3000:]}"
                return log.read_text().count("worker.started") > started_before

            wait_for(working, 90, f"{name} starting", interval=0.1)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop(self) -> None:
        """SIGTERM every process still running; they must end cleanly."""
        running = [p for p in [*self.apis.values(), *self.workers.values()] if p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def token(self, user: str = "admin", project: str = "faults", experiment: str | None = None) -> str:
        return mint_dev_token(self.settings, user=user, project=project, experiment=experiment)

    def logs_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-chars:]}" for p in sorted(self.data_dir.glob("*.log")))


@contextmanager
def site(data_dir: Path, database_url: str) -> Iterator[Site]:
    running = Site(data_dir, database_url)
    try:
        yield running
    finally:
        running.stop()


def make_catalog(base: str, admin_token: str) -> tuple[str, str]:
    """A test-double flavor and image (by the dev admin); their ids."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    suffix = uuid.uuid4().hex[:6]
    flavor = httpx.post(f"{base}{BI_PREFIX}/flavors", headers=headers, timeout=30, json={
        "friendly_name": f"td.small-{suffix}", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 512,
        "disk_mb": 1024})
    image = httpx.post(f"{base}{BI_PREFIX}/disk-images", headers=headers, timeout=30, json={
        "friendly_name": f"debian-{suffix}", "flavor_type": "test-double", "location": f"td-debian-12-{suffix}",
        "default_username": "debian", "min_ram_mib": 256})
    assert (flavor.status_code, image.status_code) == (201, 201), (flavor.text, image.text)
    return flavor.json()["id"], image.json()["id"]


# --- clients ---------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the clients saw: latency per operation, every status, and what was accepted."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)  # (operation, status) -> count
    unavailable_without_retry_after: int = 0
    failovers: int = 0
    accepted_creates: dict[str, str] = field(default_factory=dict)  # request_id -> resource id
    accepted_deletes: set[str] = field(default_factory=set)  # resource ids

    def server_errors(self, *, allowed: frozenset[int] = frozenset()) -> Counter:
        """5xx answers other than those in ``allowed`` (503 during an injected outage)."""
        return Counter({k: n for k, n in self.statuses.items() if k[1] >= 500 and k[1] not in allowed})

    def percentiles(self) -> dict[str, tuple[int, float, float]]:
        """Per operation: count, p50 and p99 latency in ms."""
        table = {}
        for operation, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            table[operation] = (len(values), statistics.median(values) * 1000, p99 * 1000)
        return table


class Client:
    """One user of the API: answers a 503/429 by waiting ``Retry-After`` and trying again (the
    same request id for a create, so a retried create is never two), and a refused connection
    by trying the next API process."""

    def __init__(self, http: httpx.AsyncClient, bases: list[str], tally: Tally, token: str,
                 *, patience: float = 60) -> None:
        self.http, self.bases, self.tally, self.token, self.patience = http, bases, tally, token, patience
        self.turn = random.randrange(len(bases))

    async def call(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.patience
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            base = self.bases[self.turn % len(self.bases)]
            start = time.perf_counter()
            try:
                response = await self.http.request(method, f"{base}{BI_PREFIX}{path}", headers=headers, **kwargs)
            except httpx.TransportError:  # that process is gone: the next one
                self.tally.failovers += 1
                self.turn += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            self.tally.latencies[operation].append(time.perf_counter() - start)
            self.tally.statuses[(operation, response.status_code)] += 1
            if response.status_code not in (429, 503) or time.monotonic() > deadline:
                return response
            retry_after = response.headers.get("Retry-After")
            if retry_after is None:
                self.tally.unavailable_without_retry_after += 1
            await asyncio.sleep(min(float(retry_after or 1), 5))

    async def create(self, flavor: str, image: str, name: str, config: dict | None = None) -> str | None:
        """Create one resource; its id once accepted (202)."""
        request_id = str(uuid.uuid4())
        body = {"request_id": request_id, "resources": [
            {"friendly_name": name, "flavor_id": flavor, "disk_image_id": image, "request_config": config or {}}]}
        response = await self.call("create", "POST", "/resources", json=body)
        if response.status_code != 202:
            return None
        resource_id = response.json()["resource_ids"][0]
        self.tally.accepted_creates[request_id] = resource_id
        return resource_id

    async def delete(self, resource_id: str) -> bool:
        response = await self.call("delete", "DELETE", f"/resources/{resource_id}")
        if response.status_code == 202:
            self.tally.accepted_deletes.add(resource_id)
        return response.status_code == 202


# --- the ledger --------------------------------------------------------------------------------

@dataclass
class Ledger:
    """The database against the provider once everything settled."""

    resources: dict[str, dict[str, Any]]  # provider-facing resource id (format_id) -> row
    tasks: Counter  # status -> count
    nodes: dict[str, dict[str, Any]]  # test-double node id -> node

    @property
    def lost(self) -> int:
        """Resources without a final state, tasks without a final status."""
        unsettled = sum(1 for r in self.resources.values() if r["status"] not in FINAL)
        return unsettled + sum(n for status, n in self.tasks.items() if status not in TERMINAL)

    @property
    def duplicated(self) -> int:
        """Nodes created more than once, and resources sharing one node."""
        twice = sum(1 for n in self.nodes.values() if n["creations"] != 1)
        owners = Counter(r["provider_resource_id"] for r in self.resources.values() if r["provider_resource_id"])
        return twice + sum(n - 1 for n in owners.values() if n > 1)

    @property
    def orphaned(self) -> int:
        """Provider nodes whose resource is deleted, in error, or unknown."""
        live = {r["provider_resource_id"] for r in self.resources.values() if r["status"] not in ("deleted", "error")}
        return sum(1 for node_id in self.nodes if node_id not in live)

    @property
    def missing(self) -> int:
        """Live resources whose node does not exist."""
        return sum(1 for r in self.resources.values()
                   if r["status"] not in ("deleted", "error") and r["provider_resource_id"] not in self.nodes)

    def final_states(self) -> str:
        counts = Counter(r["status"] for r in self.resources.values())
        return " ".join(f"{status}={n}" for status, n in sorted(counts.items()))


def read_ledger(database_url: str, data_dir: Path) -> Ledger:
    from slices_blueprint.core.ids import format_id

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT id, status, provider_resource_id FROM compute_resources").fetchall()
        tasks = Counter(dict(conn.execute(  # a batch's own row is not its status: its subtasks' are
            "SELECT status, count(*) FROM tasks t WHERE NOT EXISTS (SELECT FROM tasks c WHERE c.parent_id = t.id)"
            " GROUP BY status").fetchall()))
    resources = {format_id("resource", SITE_ID, rid): {"status": status, "provider_resource_id": prid}
                 for rid, status, prid in rows}
    nodes = {p.stem: node for p in (data_dir / "test-double").glob("*.json") if (node := _node(p)) is not None}
    return Ledger(resources=resources, tasks=tasks, nodes=nodes)


def _node(path: Path) -> dict | None:
    """A test-double node's record, or ``None`` when a worker deleted it since the listing."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def wait_settled(database_url: str, data_dir: Path, timeout: float, what: str) -> Ledger:
    """The ledger once every task is final (fails after ``timeout`` with what is not)."""
    def settled() -> Ledger | None:
        ledger = read_ledger(database_url, data_dir)
        return ledger if ledger.lost == 0 else None

    return wait_for(settled, timeout, lambda: f"{what}: {read_ledger(database_url, data_dir).tasks}, "
                    f"queue: {queue_state(database_url)}", interval=0.5)


def queue_state(database_url: str) -> str:
    """The queue's jobs by status, and the workers it knows (for a failure's message)."""
    with psycopg.connect(database_url) as conn:
        jobs = conn.execute("SELECT status, count(*), min(scheduled_at), bool_or(lock IS NOT NULL)"
                            " FROM procrastinate_jobs GROUP BY status").fetchall()
        workers = conn.execute("SELECT id, now() - last_heartbeat FROM procrastinate_workers").fetchall()
    return f"jobs {jobs}, workers {workers}"


def check_accepted(tally: Tally, ledger: Ledger) -> int:
    """Accepted requests the database does not show done: a create without its resource, a
    delete whose resource is not deleted. Answers how many."""
    missing = [rid for rid in tally.accepted_creates.values() if rid not in ledger.resources]
    undeleted = [rid for rid in tally.accepted_deletes if ledger.resources.get(rid, {}).get("status") != "deleted"]
    return len(missing) + len(undeleted)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """A plain-text table (pytest -s shows it; the CI log keeps it)."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def print_latencies(tally: Tally) -> None:
    print_table("latency per operation (ms)", [
        {"operation": op, "count": n, "p50": f"{p50:.1f}", "p99": f"{p99:.1f}"}
        for op, (n, p50, p99) in tally.percentiles().items()])


# --- the load mix ------------------------------------------------------------------------------

MIX = {"create": 20, "list": 20, "show": 20, "wait": 15, "extend": 10, "delete": 15}
"""How often each operation is drawn (weights)."""


@dataclass
class LoadRun:
    """A mixed load on the site's API processes; ``phases`` names a tally per phase."""

    phases: dict[str, Tally]

    def merged(self) -> Tally:
        total = Tally()
        for tally in self.phases.values():
            total.accepted_creates |= tally.accepted_creates
            total.accepted_deletes |= tally.accepted_deletes
            total.statuses += tally.statuses
            total.failovers += tally.failovers
            total.unavailable_without_retry_after += tally.unavailable_without_retry_after
            for operation, values in tally.latencies.items():
                total.latencies[operation] += values
        return total


async def mixed_user(client: Client, flavor: str, image: str, end: float, number: int) -> None:
    """One user until ``end``: draws operations from :data:`MIX` on its experiment's resources."""
    owned: list[str] = []
    made = 0
    operations, weights = list(MIX), list(MIX.values())
    while time.monotonic() < end:
        operation = random.choices(operations, weights)[0]
        if operation == "create" or (not owned and operation != "list"):
            resource_id = await client.create(flavor, image, f"u{number}-{made}", {"delay_s": 0.2})
            made += 1
            if resource_id:
                owned.append(resource_id)
        elif operation == "list":
            await client.call("list", "GET", "/resources")
        elif operation == "show":
            await client.call("show", "GET", f"/resources/{random.choice(owned)}")
        elif operation == "wait":
            await client.call("wait", "GET", f"/resources/{random.choice(owned)}/wait", params={"timeout": 10})
        elif operation == "extend":
            await client.call("extend", "POST", f"/resources/{random.choice(owned)}/extend",
                              json={"duration_hours": 2})
        else:
            resource_id = owned.pop(random.randrange(len(owned)))
            await client.delete(resource_id)


def run_load(running: Site, bases: list[str], flavor: str, image: str, *, clients: int, seconds: float,
             experiments: int = 20, kill_at: float | None = None) -> LoadRun:
    """``clients`` users over ``experiments`` experiments for ``seconds``; with ``kill_at``,
    the last API process is SIGKILLed that many seconds in (its users fail over to the
    others) and a second phase is tallied from then on."""
    phases = {"all API processes": Tally()}
    users: list[Client] = []

    async def killer() -> None:
        assert kill_at is not None
        await asyncio.sleep(kill_at)
        victim = running.apis[bases[-1]]
        victim.send_signal(signal.SIGKILL)
        phases["one API process killed"] = Tally()
        for user in users:
            user.tally = phases["one API process killed"]

    async def main() -> None:
        end = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            tokens = [running.token("alice", "load", f"exp-{i}") for i in range(experiments)]
            users.extend(Client(http, bases, phases["all API processes"], tokens[i % experiments])
                         for i in range(clients))
            side = [killer()] if kill_at is not None else []
            await asyncio.gather(*side, *(mixed_user(u, flavor, image, end, i) for i, u in enumerate(users)))

    asyncio.run(main())
    return LoadRun(phases)
