"""Benchmark: resource request acceptance, authenticated reads and listing, driven by ``wrk``.

Starts ``slices-blueprint serve --no-worker`` (test-double provider, WARNING logs) on a fresh
database of the PostgreSQL server given by BENCH_PG (default: the machine's server), and, in
the same run, the baselines it is compared with:
- raw psycopg running the same transaction as an accepted request (``same_shape.py``) on
  8 connections, as fast as it can;
- a minimal FastAPI app (``minimal_app.py``) with the same token check and the same SQL;
- GET /healthz of the service itself;
- plain SQL for a listed page.
Every measure runs ``--repeat`` times (service and baseline interleaved); the table shows
median [min-max]. The machine is shared: the ratios within one run are what count.

``wrk`` (Debian package ``wrk``) must be on PATH; its Lua scripts are in ``bench/wrk``.

Usage: python bench/bench_api.py [--quick] [--seconds 5] [--repeat 3] [--workers 1]
       [--save after.json] [--before before.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from same_shape import accept

from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.dev_issuer import mint_dev_token

BI = "/apis/bi.slices.eu/v1alpha2"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ATTEMPTS = 3  # a measure with error answers (PostgreSQL out of sessions: it is shared) is run again
MINIMAL_POOL = 20  # the minimal app's PostgreSQL sessions (PostgreSQL allows 100 here, shared)
LISTED = ("id, friendly_name, experiment_id, project_id, created_by, flavor_id, disk_image_id, provider, status, "
          "status_reason, provider_resource_id, access, expires_at, reservation_id, created_at, updated_at")


@dataclass
class Run:
    """One measurement: a rate and latencies (ms), and the server CPU per request (ms)."""

    rate: float
    p50: float
    p99: float
    cpu_ms: float | None = None


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    def stat(self, name: str) -> tuple[float, float, float]:
        values = [getattr(r, name) for r in self.runs]
        return min(values), statistics.median(values), max(values)


class Servers:
    """The service and the minimal app, started once for the whole run."""

    def __init__(self, db_url: str, data_dir: Path, settings: Settings, workers: int) -> None:
        self.service_port = 18000 + os.getpid() % 1000
        self.minimal_port = self.service_port + 1000
        env = {**os.environ, "DATABASE_URL": db_url, "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
               "SLICES_BLUEPRINT_DEV_MODE": "true", "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]',
               "SLICES_BLUEPRINT_LOG_LEVEL": "WARNING"}
        serve = [sys.executable, "-m", "slices_blueprint", "serve", "--no-worker", "--port", str(self.service_port)]
        if workers > 1:
            serve += ["--workers", str(workers)]
        self.service = subprocess.Popen(serve, env=env)
        self.minimal = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "minimal_app.py"), str(self.minimal_port), db_url,
             str(data_dir / "dev-issuer.jwk"), settings.dev_issuer, settings.service_url, str(MINIMAL_POOL)], env=env)
        self.service_url = f"http://127.0.0.1:{self.service_port}"
        self.minimal_url = f"http://127.0.0.1:{self.minimal_port}"
        _wait_ready(f"{self.service_url}/readyz")
        _wait_ready(f"{self.minimal_url}/docs")

    def stop(self) -> None:
        for process in (self.service, self.minimal):
            process.terminate()
            process.wait(timeout=30)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer")


def _cpu_seconds(pid: int) -> float:
    process = psutil.Process(pid)
    times = [p.cpu_times() for p in (process, *process.children(recursive=True))]
    return sum(t.user + t.system for t in times)


def wrk(url: str, script: str, connections: int, seconds: float, env: dict[str, str],
        cpu_of: int | None = None, *, warm_up: bool = False) -> Run | None:
    """Run wrk against ``url`` with a script of ``bench/wrk``; refuse a measure with errors
    (a warm-up may end before any answer)."""
    for attempt in range(ATTEMPTS):
        run = _wrk_once(url, script, connections, seconds, env, cpu_of, warm_up)
        if run is not False:
            return run
        print(f"wrk {script} on {url}: errors (attempt {attempt + 1}); PostgreSQL is shared: trying again",
              file=sys.stderr)
        time.sleep(3)
    raise SystemExit(f"wrk {script} on {url}: errors in {ATTEMPTS} attempts")


def _wrk_once(url: str, script: str, connections: int, seconds: float, env: dict[str, str],
              cpu_of: int | None, warm_up: bool) -> Run | None | bool:
    """One wrk run: its measure, None for a warm-up, False when an answer was an error."""
    threads = min(connections, 2)
    before = _cpu_seconds(cpu_of) if cpu_of else 0.0
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency",
         "-s", str(BENCH_DIR / "wrk" / script), url],
        env={**os.environ, **env, "BENCH_WRK_DIR": str(BENCH_DIR / "wrk")},
        capture_output=True, text=True, check=True).stdout
    cpu = _cpu_seconds(cpu_of) - before if cpu_of else None
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    result = json.loads(line.removeprefix("BENCH "))
    if warm_up:
        return None
    if result["bad_status"] or result["socket_errors"] or not result["requests"]:
        print(out, file=sys.stderr)
        return False
    n = result["requests"]
    return Run(rate=n / (result["duration_us"] / 1e6), p50=result["p50_us"] / 1000, p99=result["p99_us"] / 1000,
               cpu_ms=cpu * 1000 / n if cpu is not None else None)


async def _raw_same_shape(db_url: str, experiment: str, flavor: uuid.UUID, image: uuid.UUID,
                          connections: int, seconds: float) -> Run:
    """The accepted request's transaction in plain psycopg, on ``connections`` connections."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def loop(conn: psycopg.AsyncConnection, n: int) -> None:
        i = 0
        while time.monotonic() < stop:
            i += 1
            start = time.perf_counter()
            await accept(conn, experiment, uuid.uuid4(), f"raw-{uuid.uuid4().hex[:12]}", flavor, image)
            latencies.append(time.perf_counter() - start)

    conns = [await psycopg.AsyncConnection.connect(db_url, autocommit=True) for _ in range(connections)]
    start = time.perf_counter()
    await asyncio.gather(*(loop(c, n) for n, c in enumerate(conns)))
    wall = time.perf_counter() - start
    for c in conns:
        await c.close()
    return _run_of(latencies, wall)


def _run_of(latencies: list[float], wall: float) -> Run:
    ms = sorted(x * 1000 for x in latencies)
    return Run(rate=len(ms) / wall, p50=statistics.median(ms), p99=ms[min(len(ms) - 1, int(len(ms) * 0.99))])


def plain_sql_page(db_url: str, experiment: str, seconds: float) -> Run:
    """The first listed page of ``experiment`` read with plain SQL, one query after another."""
    latencies = []
    with psycopg.connect(db_url) as conn:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            conn.execute(f"SELECT {LISTED} FROM compute_resources WHERE experiment_id = %s AND status <> 'deleted' "
                         "ORDER BY id LIMIT 100", (experiment,)).fetchall()
            latencies.append(time.perf_counter() - t)
            conn.rollback()
        return _run_of(latencies, time.perf_counter() - start)


def fill(db_url: str, experiment: str, project: str, flavor: uuid.UUID, image: uuid.UUID, rows: int) -> None:
    """Store ``rows`` running resources in ``experiment`` (its row and its project's too)."""
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO projects (id, created_at, updated_at) VALUES (%s, now(), now()) "
                     "ON CONFLICT DO NOTHING", (project,))
        conn.execute("INSERT INTO experiments (id, project_id, created_at, updated_at) VALUES (%s, %s, now(), now()) "
                     "ON CONFLICT DO NOTHING", (experiment, project))
        conn.execute(
            """INSERT INTO compute_resources (id, experiment_id, project_id, friendly_name, flavor_id, disk_image_id,
                   provider, status, request_config, access, provider_data, expires_at, created_at, updated_at)
               SELECT gen_random_uuid(), %s, %s, 'fill-' || g, %s, %s, 'test-double', 'running', '{}',
                   '{"ipv4": "198.51.100.7", "ssh_user": "debian"}', '{}', now() + interval '1 day', now(), now()
               FROM generate_series(1, %s) g""", (experiment, project, flavor, image, rows))
        conn.execute("ANALYZE")


@dataclass
class Table:
    """The measures of the run, printed as the issue's table."""

    rows: dict[str, dict[str, Series]] = field(default_factory=dict)

    def add(self, measure: str, side: str, run: Run) -> None:
        self.rows.setdefault(measure, {}).setdefault(side, Series()).runs.append(run)

    def to_json(self) -> dict:
        return {m: {s: [vars(r) for r in series.runs] for s, series in sides.items()} for m, sides in self.rows.items()}

    @classmethod
    def from_json(cls, data: dict) -> Table:
        return cls({m: {s: Series([Run(**r) for r in runs]) for s, runs in sides.items()} for m, sides in data.items()})


def _fmt(series: Series, stat: str, unit: str, digits: int = 0) -> str:
    low, mid, high = series.stat(stat)
    return f"{mid:.{digits}f} {unit} [{low:.{digits}f}-{high:.{digits}f}]"


# (label, measure, service side, baseline side, what is compared, unit, smaller is better)
LINES: list[tuple[str, str, str, str, str, str, bool]] = [
    ("POST /resources x32 vs raw psycopg same tx x8", "post32", "service", "raw", "rate", "/s", False),
    ("POST /resources x32 vs minimal app x32", "post32", "service", "minimal", "rate", "/s", False),
    ("  app CPU per request (ms)", "post32", "service", "minimal", "cpu_ms", "ms", True),
    ("  p50 at 32 connections (ms)", "post32", "service", "minimal", "p50", "ms", True),
    ("  p99 at 32 connections (ms)", "post32", "service", "minimal", "p99", "ms", True),
    ("POST /resources x1 p50 vs healthz x1 p50", "post1", "service", "healthz", "p50", "ms", True),
    ("POST /resources x1 p99 vs healthz x1 p99", "post1", "service", "healthz", "p99", "ms", True),
    ("GET /flavors x32 vs healthz x32", "flavors32", "service", "healthz", "rate", "/s", False),
    ("GET /flavors x32 vs minimal app x32", "flavors32", "service", "minimal", "rate", "/s", False),
    ("GET /disk-images x32 vs healthz x32", "images32", "service", "healthz", "rate", "/s", False),
    ("GET /resources/{id} x32 vs healthz x32", "resource32", "service", "healthz", "rate", "/s", False),
    ("list first 100 of 10k p50 vs plain SQL", "list", "service", "sql", "p50", "ms", True),
    ("same, 50k rows of another experiment", "crowded", "service", "sql", "p50", "ms", True),
]


def print_table(table: Table, title: str) -> None:
    print(f"\n{title}\n")
    print("| measure | service median [min-max] | baseline median [min-max] | ratio |")
    print("|---|---|---|---|")
    for label, measure, svc, base, stat, unit, _ in LINES:
        sides = table.rows.get(measure, {})
        if svc not in sides or base not in sides:
            continue
        digits = 1 if unit == "ms" else 0
        a, b = sides[svc].stat(stat)[1], sides[base].stat(stat)[1]
        ratio = a / b if b else float("nan")
        shown = f"{ratio:.2f}" if not (stat in ("p50", "p99") and ratio > 3) else f"{ratio:.1f}x"
        print(f"| {label} | {_fmt(sides[svc], stat, unit, digits)} | {base}: {_fmt(sides[base], stat, unit, digits)} "
              f"| {shown} |")


def print_comparison(before: Table, after: Table) -> None:
    print("\nBefore -> after (medians; ratios to the baseline of the same run)\n")
    print("| measure | before | after | before ratio | after ratio |")
    print("|---|---|---|---|---|")
    for label, measure, svc, base, stat, _unit, _ in LINES:
        try:
            b, a = before.rows[measure], after.rows[measure]
            vb, va = b[svc].stat(stat)[1], a[svc].stat(stat)[1]
            rb, ra = vb / b[base].stat(stat)[1], va / a[base].stat(stat)[1]
        except (KeyError, ZeroDivisionError, TypeError):
            continue
        print(f"| {label} | {vb:.1f} | {va:.1f} | {rb:.2f} | {ra:.2f} |")


def bench(args: argparse.Namespace, db_url: str, settings: Settings, servers: Servers) -> Table:
    svc, mini = servers.service_url, servers.minimal_url
    admin = mint_dev_token(settings, user="admin", project="bench")
    token = mint_dev_token(settings, user="alice", project="bench", experiment="bench", experiment_days=30, lifetime_s=7200)
    lister = mint_dev_token(settings, user="alice", project="bench", experiment="list", experiment_days=30, lifetime_s=7200)
    with httpx.Client(base_url=svc, timeout=60) as client:
        auth = {"Authorization": f"Bearer {admin}"}
        flavor = client.post(f"{BI}/flavors", headers=auth, json={
            "friendly_name": "b", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 256}).json()
        image = client.post(f"{BI}/disk-images", headers=auth, json={
            "friendly_name": "b", "flavor_type": "test-double", "location": "b"}).json()
        for t in (token, lister):  # the experiments are recorded by their first request
            client.get(f"{BI}/resources", headers={"Authorization": f"Bearer {t}"}).raise_for_status()
        one = client.post(f"{BI}/resources", headers={"Authorization": f"Bearer {token}"}, json={
            "request_id": str(uuid.uuid4()), "resources": [
                {"friendly_name": "first", "flavor_id": flavor["id"], "disk_image_id": image["id"]}]})
        one.raise_for_status()
        resource_id = one.json()["resource_ids"][0]
    with psycopg.connect(db_url) as conn:
        flavor_uuid, image_uuid = conn.execute("SELECT (SELECT id FROM flavors), (SELECT id FROM disk_images)").fetchone()
        experiment, list_experiment = (r[0] for r in conn.execute(
            "SELECT id FROM experiments ORDER BY name").fetchall())  # 'bench', 'list'
        project = conn.execute("SELECT project_id FROM experiments WHERE id = %s", (experiment,)).fetchone()[0]
    fill(db_url, list_experiment, project, flavor_uuid, image_uuid, args.stored)

    sec = args.seconds
    post_env = {"BENCH_TOKEN": token, "BENCH_FLAVOR": flavor["id"], "BENCH_IMAGE": image["id"]}

    def posting(base: str, path: str) -> Callable[[int], dict[str, str]]:
        return lambda _: {**post_env, "BENCH_PATH": path, "BENCH_RUN": str(random.getrandbits(31))}

    def get(path: str, bearer: str | None = token) -> dict[str, str]:
        return {"BENCH_PATH": path, "BENCH_TOKEN": bearer or ""}

    table = Table()
    sid = servers.service.pid
    # warm-up (pools filled, caches read): not measured
    wrk(svc, "post_resources.lua", 32, 3, posting(svc, f"{BI}/resources")(0), warm_up=True)
    wrk(mini, "post_resources.lua", 32, 3, posting(mini, "/resources")(0), warm_up=True)
    wrk(svc, "get.lua", 32, 2, get(f"{BI}/flavors"), warm_up=True)
    for rep in range(args.repeat):
        print(f"repetition {rep + 1}/{args.repeat}", file=sys.stderr)
        table.add("post32", "service", wrk(svc, "post_resources.lua", 32, sec, posting(svc, f"{BI}/resources")(rep), sid))
        table.add("post32", "minimal", wrk(mini, "post_resources.lua", 32, sec, posting(mini, "/resources")(rep),
                                            servers.minimal.pid))
        table.add("post32", "raw", asyncio.run(_raw_same_shape(db_url, experiment, flavor_uuid, image_uuid, 8, sec)))
        table.add("post1", "service", wrk(svc, "post_resources.lua", 1, sec, posting(svc, f"{BI}/resources")(rep)))
        table.add("post1", "healthz", wrk(svc, "get.lua", 1, sec, get("/healthz", None)))
        table.add("flavors32", "service", wrk(svc, "get.lua", 32, sec, get(f"{BI}/flavors")))
        table.add("flavors32", "minimal", wrk(mini, "get.lua", 32, sec, get("/flavors")))
        table.add("images32", "service", wrk(svc, "get.lua", 32, sec, get(f"{BI}/disk-images")))
        table.add("resource32", "service", wrk(svc, "get.lua", 32, sec, get(f"{BI}/resources/{resource_id}")))
        health = wrk(svc, "get.lua", 32, sec, get("/healthz", None))
        for measure in ("flavors32", "images32", "resource32"):
            table.add(measure, "healthz", health)
        table.add("list", "service", wrk(svc, "get.lua", 1, sec, get(f"{BI}/resources?limit=100", lister)))
        table.add("list", "sql", plain_sql_page(db_url, list_experiment, sec))
    crowd = f"{list_experiment}-crowd"
    fill(db_url, crowd, project, flavor_uuid, image_uuid, args.crowd)
    for _ in range(args.repeat):
        table.add("crowded", "service", wrk(svc, "get.lua", 1, sec, get(f"{BI}/resources?limit=100", lister)))
        table.add("crowded", "sql", plain_sql_page(db_url, list_experiment, sec))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s per measure, 2,000 + 10,000 rows stored")
    parser.add_argument("--seconds", type=float, default=5, help="per measure and repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stored", type=int, default=10000, help="resources of the listed experiment")
    parser.add_argument("--crowd", type=int, default=50000, help="resources of another experiment, added last")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N")
    parser.add_argument("--save", type=Path, help="write the measures as JSON")
    parser.add_argument("--before", type=Path, help="a --save file of an earlier run, to compare with")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.stored, args.crowd = 2, 2000, 10000
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    name = f"sb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG.rsplit("/", 1)[0] + f"/{name}"
    data_dir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    settings = Settings(data_dir=data_dir, database_url=db_url, port=18000 + os.getpid() % 1000,
                        dev_mode=True, providers=["test-double"])
    mint_dev_token(settings, user="admin", project="bench")  # creates the dev key the minimal app reads
    migrations.upgrade(db_url)
    servers = Servers(db_url, data_dir, settings, args.workers)
    try:
        table = bench(args, db_url, settings, servers)
    finally:
        servers.stop()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)
    print_table(table, f"wrk, {args.seconds:g} s per measure, {args.repeat} repetitions, "
                       f"serve --workers {args.workers}, {os.cpu_count()} cores")
    if args.save:
        args.save.write_text(json.dumps(table.to_json(), indent=1))
    if args.before:
        print_comparison(Table.from_json(json.loads(args.before.read_text())), table)


if __name__ == "__main__":
    main()
