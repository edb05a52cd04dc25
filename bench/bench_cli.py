"""Benchmark: how long client commands take to start, against ``python -c pass`` in the same run.

Starts ``slices-blueprint serve --dev --detach`` (TEST DOUBLE provider) on a fresh database of
the PostgreSQL server given by BENCH_PG (default: the machine's server), creates a few
resources, then times N runs each of ``python -c pass``, ``slices-blueprint --help`` and
``slices-blueprint list`` (one call to the service), as processes, wall clock; prints the
median and the best, and the import time of the CLI (``python -X importtime``).

``--src DIR`` times another checkout's ``src`` (e.g. the code before a change) against the
same service.

Usage: python bench/bench_cli.py [--runs 10] [--src DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from slices_blueprint.core import migrations

BI = "/apis/bi.slices.eu/v1alpha2"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` runs of ``argv`` (each must exit 0)."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def import_ms(env: dict[str, str], args: list[str]) -> float:
    """Cumulative import time of the CLI's main module, in ms."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "slices_blueprint", *args], env=env,
                            capture_output=True, text=True, check=False)
    found = re.search(r"\|\s+(\d+) \| slices_blueprint\.cli\.main$", result.stderr, re.MULTILINE)
    return int(found.group(1)) / 1000 if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the checkout's src directory to time")
    args = parser.parse_args()

    name = f"bench_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG.rsplit("/", 1)[0] + f"/{name}"
    migrations.upgrade(url)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    port = 18000 + os.getpid() % 1000
    service = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SLICES_BLUEPRINT_DATABASE_URL": url, "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
           "SLICES_BLUEPRINT_PORT": str(port), "SLICES_BLUEPRINT_URL": service,
           "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]', "SLICES_BLUEPRINT_CLIENT_CONFIG": "/nonexistent",
           "PYTHONPATH": str(ROOT / "src")}
    started = subprocess.run([sys.executable, "-m", "slices_blueprint", "serve", "--dev", "--detach"], env=env,
                             capture_output=True, text=True, check=True)
    pid = int(re.search(r"kill (\d+)", started.stdout).group(1))
    try:
        def token(**body: str) -> str:
            return httpx.post(f"{service}/dev/tokens", json=body).json()["token"]

        admin = {"Authorization": f"Bearer {token(user='admin')}"}
        flavor = httpx.post(f"{service}{BI}/flavors", headers=admin, json={
            "friendly_name": "td.small", "flavor_type": "test-double", "vcpus": 1, "ram_mib": 256}).json()["id"]
        image = httpx.post(f"{service}{BI}/disk-images", headers=admin, json={
            "friendly_name": "debian", "flavor_type": "test-double", "location": "x"}).json()["id"]
        env["SLICES_BLUEPRINT_TOKEN"] = token(experiment="bench")
        httpx.post(f"{service}{BI}/resources", headers={"Authorization": f"Bearer {env['SLICES_BLUEPRINT_TOKEN']}"},
                   json={"request_id": str(uuid.uuid4()), "resources": [
                       {"friendly_name": f"vm{i}", "flavor_id": flavor, "disk_image_id": image} for i in range(5)]})

        timed_env = {**env, "PYTHONPATH": str(args.src)}
        cli = [sys.executable, "-m", "slices_blueprint"]
        rows = [("python -c pass", timed([sys.executable, "-c", "pass"], timed_env, args.runs), None),
                ("slices-blueprint --help", timed([*cli, "--help"], timed_env, args.runs), import_ms(timed_env, ["--help"])),
                ("slices-blueprint list", timed([*cli, "list"], timed_env, args.runs), import_ms(timed_env, ["list"]))]
        print(f"CLI start-up, {args.runs} runs each, src {args.src}")
        print(f"{'command':<26}{'median s':>10}{'best s':>10}{'CLI imports ms':>16}")
        for label, seconds, imports in rows:
            shown = "" if imports is None else f"{imports:.0f}"
            print(f"{label:<26}{statistics.median(seconds):>10.3f}{min(seconds):>10.3f}{shown:>16}")
    finally:
        os.kill(pid, signal.SIGTERM)
        time.sleep(3)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
