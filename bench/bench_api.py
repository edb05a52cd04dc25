"""Benchmark: resource request acceptance and resource listing through the real service.

Starts ``slices-blueprint serve --no-worker`` as a separate process on a fresh database of
the PostgreSQL server given by BENCH_PG (default: the machine's server), then prints:
- accepted requests per second and p50/p99 acceptance latency for N concurrent
  POST /resources (TEST DOUBLE flavor; one resource each), against GET /healthz at the
  same concurrency in the same run as the baseline (ratio printed);
- list latency p50/p99 of GET /resources (first page of 100, and 1,000) with 10,000
  resources stored, against the same page read with plain SQL as the baseline.

Usage: python bench/bench_api.py [--requests 1000] [--concurrency 100] [--stored 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.dev_issuer import mint_dev_token

BI = "/apis/bi.slices.eu/v1alpha2"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100)[int(q) - 1] * 1000
        if len(values) > 1
        else values[0] * 1000
    )


async def timed_requests(
    client: httpx.AsyncClient, calls: list, concurrency: int
) -> tuple[list[float], float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(call) -> None:
        async with gate:
            start = time.perf_counter()
            response = await call()
            latencies.append(time.perf_counter() - start)
            assert response.status_code < 300, response.text

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return latencies, time.perf_counter() - start


def report(name: str, latencies: list[float], wall: float) -> float:
    rate = len(latencies) / wall
    print(
        f"{name:<34} {rate:9.1f} req/s   p50 {pct(latencies, 50):7.1f} ms   p99 {pct(latencies, 99):7.1f} ms"
    )
    return rate


async def bench(url: str, settings: Settings, db_url: str, args: argparse.Namespace) -> None:
    admin = mint_dev_token(settings, user="admin", project="bench")
    token = mint_dev_token(
        settings, user="alice", project="bench", experiment="bench", experiment_days=30
    )
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        auth = {"Authorization": f"Bearer {admin}"}
        flavor = (
            await client.post(
                f"{BI}/flavors",
                headers=auth,
                json={
                    "friendly_name": "b",
                    "flavor_type": "test-double",
                    "vcpus": 1,
                    "ram_mib": 256,
                },
            )
        ).json()
        image = (
            await client.post(
                f"{BI}/disk-images",
                headers=auth,
                json={"friendly_name": "b", "flavor_type": "test-double", "location": "b"},
            )
        ).json()
        auth = {"Authorization": f"Bearer {token}"}
        await client.get(f"{BI}/resources", headers=auth)  # warm-up: upsert the experiment

        print(f"\n== acceptance: {args.requests} requests, {args.concurrency} in flight ==")
        health = [lambda: client.get("/healthz") for _ in range(args.requests)]
        base_rate = report(
            "GET /healthz (baseline)", *await timed_requests(client, health, args.concurrency)
        )

        def post(i: int):
            body = {
                "request_id": str(uuid.uuid4()),
                "resources": [
                    {
                        "friendly_name": f"r{i}",
                        "flavor_id": flavor["id"],
                        "disk_image_id": image["id"],
                    }
                ],
            }
            return lambda: client.post(f"{BI}/resources", headers=auth, json=body)

        rate = report(
            "POST /resources (accepted, 202)",
            *await timed_requests(
                client, [post(i) for i in range(args.requests)], args.concurrency
            ),
        )
        print(f"ratio accepted/baseline: {rate / base_rate:.3f}")

        print(f"\n== listing with {args.stored} resources stored ==")
        fill(db_url, args.stored)
        for page in (100, 1000):
            calls = [
                lambda p=page: client.get(f"{BI}/resources", headers=auth, params={"limit": p})
                for _ in range(200)
            ]
            lat, wall = await timed_requests(client, calls, 1)
            report(f"GET /resources limit={page}", lat, wall)
            sql = sql_baseline(db_url, page, 200)
            report("SQL same page (baseline)", sql, sum(sql))
            print(f"ratio p50 API/SQL: {statistics.median(lat) / statistics.median(sql):.1f}")


def fill(db_url: str, stored: int) -> None:
    """Copy the existing rows until ``stored`` resources are in the benchmark experiment."""
    with psycopg.connect(db_url) as conn:
        (have,) = conn.execute("SELECT count(*) FROM compute_resources").fetchone()
        conn.execute(
            """
            INSERT INTO compute_resources (id, experiment_id, project_id, created_by, friendly_name, flavor_id,
                disk_image_id, provider, status, request_config, access, provider_data, expires_at)
            SELECT gen_random_uuid(), experiment_id, project_id, created_by, 'fill-' || g, flavor_id, disk_image_id,
                provider, 'running', request_config, '{"ipv4": "198.51.100.7", "ssh_user": "debian"}', '{}', expires_at
            FROM (SELECT * FROM compute_resources LIMIT 1) r, generate_series(1, %s) g
        """,
            (max(0, stored - have),),
        )
        conn.execute("ANALYZE compute_resources")


def sql_baseline(db_url: str, page: int, repeat: int) -> list[float]:
    with psycopg.connect(db_url) as conn:
        out = []
        for _ in range(repeat):
            start = time.perf_counter()
            conn.execute(
                "SELECT * FROM compute_resources WHERE experiment_id = (SELECT experiment_id FROM compute_resources LIMIT 1) "
                "AND status <> 'deleted' ORDER BY id LIMIT %s",
                (page,),
            ).fetchall()
            out.append(time.perf_counter() - start)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--stored", type=int, default=10000)
    args = parser.parse_args()
    name = f"sb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG.rsplit("/", 1)[0] + f"/{name}"
    data_dir = Path(tempfile.mkdtemp(prefix="sb-bench-"))
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
        "SLICES_BLUEPRINT_DEV_MODE": "true",
        "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]',
        "SLICES_BLUEPRINT_LOG_LEVEL": "WARNING",
    }
    settings = Settings(
        data_dir=data_dir, database_url=db_url, port=port, dev_mode=True, providers=["test-double"]
    )
    migrations.upgrade(db_url)
    server = subprocess.Popen(
        [sys.executable, "-m", "slices_blueprint", "serve", "--no-worker", "--port", str(port)],
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
            if time.monotonic() > deadline:
                raise SystemExit("the service did not start")
        asyncio.run(bench(url, settings, db_url, args))
    finally:
        server.terminate()
        server.wait(timeout=30)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
