"""End-to-end time to create and delete N VMs: openstacksdk directly, our driver, our API.

All three run in one invocation against the same cloud (default: the AIO cloud of
``../shared/tools/openstack-aio.sh``), each creating N servers at once, waiting until all
are ACTIVE, then deleting them and waiting until all are gone:

- ``sdk``: a plain openstacksdk script (create_server x N, wait_for_server, delete_server,
  wait_for_delete; polling every second);
- ``driver``: ``OpenStackDriver.create`` / ``delete`` for the N servers concurrently;
- ``api``: the whole service: ``slices-blueprint serve`` (API + in-process Procrastinate
  worker) on a scratch PostgreSQL database, one ``POST /resources`` with N resources,
  ``GET /tasks/{id}`` until done, then ``DELETE /resources/{id}`` for each and wait.

Each path first creates and deletes one VM untimed (signing in, endpoint discovery: a
long-running worker pays that once). Prints each path's create, delete and total seconds
and its ratio to the SDK. Everything the benchmark makes (flavor, image, network,
database, service) is removed at the end.

    python bench/bench_openstack.py [-n 5] [--rounds 1] [--paths sdk,driver,api]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openstack
import psycopg
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from slices_blueprint.core.logging import configure_logging
from slices_blueprint.providers.base import NodeSpec
from slices_blueprint.providers.openstack.connection import parse_clouds_yaml
from slices_blueprint.providers.openstack.driver import OpenStackDriver

BI = "/apis/bi.slices.eu/v1alpha2"
TAG = f"sbbench-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Setup:
    clouds_yaml: Path
    cloud: str
    flavor_id: str
    image_id: str
    network: str


@dataclass(frozen=True)
class Timing:
    create_s: float
    delete_s: float

    @property
    def total_s(self) -> float:
        return self.create_s + self.delete_s


# ------------------------------------------------------------------ the three paths


def run_sdk(conn: Connection, setup: Setup, n: int) -> Timing:
    start = time.perf_counter()
    servers = [
        conn.compute.create_server(
            name=f"{TAG}-sdk-{i}",
            image_id=setup.image_id,
            flavor_id=setup.flavor_id,
            networks=[{"uuid": conn.network.find_network(setup.network, ignore_missing=False).id}],
        )
        for i in range(n)
    ]
    for server in servers:
        conn.compute.wait_for_server(server, status="ACTIVE", interval=1, wait=300)
    created = time.perf_counter()
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, interval=1, wait=300)
    return Timing(created - start, time.perf_counter() - created)


async def run_driver(setup: Setup, n: int) -> Timing:
    driver = OpenStackDriver(*parse_clouds_yaml(setup.clouds_yaml.read_bytes(), setup.cloud))

    async def quiet(pct: int, message: str) -> None:
        return None

    specs = [
        NodeSpec(
            resource_id=f"res_bench_{uuid.uuid4().hex}",
            name=f"{TAG}-drv-{i}",
            experiment_id="exp_bench",
            project_id="proj_bench",
            image_location=setup.image_id,
            image_default_username=None,
            flavor_ref=setup.flavor_id,
            vcpus=1,
            ram_mib=64,
            disk_mb=1024,
            network_interfaces=[setup.network],
        )
        for i in range(n)
    ]
    try:
        start = time.perf_counter()
        nodes = await asyncio.gather(*(driver.create(spec, quiet) for spec in specs))
        created = time.perf_counter()
        await asyncio.gather(*(driver.delete(node.provider_resource_id, quiet) for node in nodes))
        return Timing(created - start, time.perf_counter() - created)
    finally:
        await driver.close()


@dataclass(frozen=True)
class Service:
    """The running service and the catalog entries it offers for the benchmark."""

    base: str
    flavor_id: str
    image_id: str


def run_api(service: Service, setup: Setup, n: int) -> Timing:
    with httpx.Client(base_url=service.base, timeout=30) as http:
        token = _token(http, experiment=f"bench-{uuid.uuid4().hex[:6]}")
        body = {
            "request_id": str(uuid.uuid4()),
            "resources": [
                {
                    "friendly_name": f"{TAG}-api-{i}",
                    "flavor_id": service.flavor_id,
                    "disk_image_id": service.image_id,
                    "network_interfaces": [setup.network],
                }
                for i in range(n)
            ],
        }
        start = time.perf_counter()
        task = _post(http, token, "/resources", body)
        _wait_tasks(http, token, [task["id"]])
        created = time.perf_counter()
        deletes = [
            _call(http, "DELETE", token, f"/resources/{rid}")["id"] for rid in task["resource_ids"]
        ]
        _wait_tasks(http, token, deletes)
        return Timing(created - start, time.perf_counter() - created)


def _api_catalog(base: str, setup: Setup) -> Service:
    """Offer the benchmark's flavor and image through the API (as the dev admin)."""
    with httpx.Client(base_url=base, timeout=30) as http:
        admin = _token(http, user="admin")
        common = {"flavor_type": "vm", "cluster_id": TAG}
        flavor = _post(
            http,
            admin,
            "/flavors",
            {
                **common,
                "friendly_name": f"{TAG}-flavor",
                "vcpus": 1,
                "ram_mib": 64,
                "disk_mb": 1024,
                "provider_ref": setup.flavor_id,
            },
        )
        image = _post(
            http,
            admin,
            "/disk-images",
            {
                **common,
                "friendly_name": f"{TAG}-image",
                "location": setup.image_id,
            },
        )
    return Service(base, flavor["id"], image["id"])


def _call(http: httpx.Client, method: str, token: str, path: str, **kw: object) -> dict:
    response = http.request(
        method, f"{BI}{path}", headers={"Authorization": f"Bearer {token}"}, **kw
    )
    if response.status_code >= 400:
        raise SystemExit(f"{method} {path}: HTTP {response.status_code} {response.text}")
    return response.json()


def _post(http: httpx.Client, token: str, path: str, body: dict) -> dict:
    return _call(http, "POST", token, path, json=body)


def _token(http: httpx.Client, **claims: str) -> str:
    response = http.post("/dev/tokens", json={"project": "bench", **claims})
    response.raise_for_status()
    return response.json()["token"]


def _wait_tasks(http: httpx.Client, token: str, task_ids: list[str]) -> None:
    pending = set(task_ids)
    while pending:
        for task_id in list(pending):
            task = _call(http, "GET", token, f"/tasks/{task_id}")
            if task["status"] == "succeeded":
                pending.discard(task_id)
            elif task["status"] in ("failed", "cancelled"):
                raise SystemExit(f"task {task_id} {task['status']}: {task}")
        time.sleep(0.2)


# ------------------------------------------------------------------ fixtures


@contextmanager
def cloud_setup(conn: Connection, clouds_yaml: Path, cloud: str, n: int) -> Iterator[Setup]:
    """A flavor, an image and a network for the benchmark, and room in the instance quota."""
    with ExitStack() as undo:
        flavor = conn.compute.create_flavor(name=f"{TAG}-flavor", vcpus=1, ram=64, disk=1)
        undo.callback(conn.compute.delete_flavor, flavor)
        image = conn.image.create_image(
            f"{TAG}-image", data=b"bench", disk_format="raw", container_format="bare", wait=True
        )
        undo.callback(conn.image.delete_image, image)
        net = conn.network.create_network(name=f"{TAG}-net")
        undo.callback(conn.network.delete_network, net)
        undo.callback(_delete_leftovers, conn)
        conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.233.0.0/16")
        quota = conn.compute.get_quota_set(conn.current_project_id, usage=True)
        needed = quota.usage.get("instances", 0) + n
        if 0 <= quota.instances < needed:
            conn.compute.update_quota_set(conn.current_project_id, instances=needed)
            undo.callback(
                conn.compute.update_quota_set, conn.current_project_id, instances=quota.instances
            )
        yield Setup(clouds_yaml, cloud, flavor.id, image.id, net.name)


def _delete_leftovers(conn: Connection) -> None:
    """Servers a failed run left behind (all are named after the run's tag)."""
    servers = [s for s in conn.compute.servers() if s.name.startswith(TAG)]
    for server in servers:
        conn.compute.delete_server(server, ignore_missing=True)
    for server in servers:
        conn.compute.wait_for_delete(server, interval=1, wait=300)


@contextmanager
def service(setup: Setup, postgres: str) -> Iterator[Service]:
    """``slices-blueprint serve`` on a scratch database with the cloud as site-wide cloud."""
    db = f"sb_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{db}"')
    port = _free_port()
    with tempfile.TemporaryDirectory() as data_dir, ExitStack() as undo:
        undo.callback(_drop_database, postgres, db)
        env = os.environ | {
            "DATABASE_URL": f"{postgres}/{db}",
            "SLICES_BLUEPRINT_DEV_MODE": "true",
            "SLICES_BLUEPRINT_HOST": "127.0.0.1",
            "SLICES_BLUEPRINT_PORT": str(port),
            "SLICES_BLUEPRINT_DATA_DIR": data_dir,
            "SLICES_BLUEPRINT_PROVIDERS": '["vm"]',
            "SLICES_BLUEPRINT_TRUSTED_ISSUERS": "[]",
            "SLICES_BLUEPRINT_OPENSTACK_CLOUDS_YAML": str(setup.clouds_yaml),
            "SLICES_BLUEPRINT_OPENSTACK_CLOUD": setup.cloud,
            "SLICES_BLUEPRINT_LOG_LEVEL": "WARNING",
        }
        log = open(Path(data_dir) / "serve.log", "w")  # noqa: SIM115 - closed by undo
        undo.callback(log.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "slices_blueprint", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        undo.callback(_stop, proc)
        base = f"http://127.0.0.1:{port}"
        if not _wait_for(lambda: _answers(f"{base}/readyz"), 60):
            tail = (Path(data_dir) / "serve.log").read_text()[-3000:]
            raise SystemExit(f"the service did not start; its log ends with:\n{tail}")
        yield _api_catalog(base, setup)


def _drop_database(postgres: str, db: str) -> None:
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _wait_for(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5, help="VMs per run (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each path (default 1)")
    parser.add_argument("--paths", default="sdk,driver,api", help="which paths, comma-separated")
    parser.add_argument(
        "--clouds-yaml",
        type=Path,
        default=Path(os.environ.get("AIO_CLOUDS_YAML", "/var/lib/openstack-aio/clouds.yaml")),
    )
    parser.add_argument("--cloud", default="aio")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server for the API path's scratch database",
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    paths = args.paths.split(",")

    config = OpenStackConfig(config_files=[str(args.clouds_yaml)], load_envvars=False)
    conn = openstack.connection.Connection(config=config.get_one(args.cloud))
    results: dict[str, list[Timing]] = {path: [] for path in paths}
    with ExitStack() as stack:
        setup = stack.enter_context(cloud_setup(conn, args.clouds_yaml, args.cloud, args.n))
        api = stack.enter_context(service(setup, args.postgres)) if "api" in paths else None

        def run(path: str, n: int) -> Timing:
            if path == "sdk":
                return run_sdk(conn, setup, n)
            if path == "driver":
                return asyncio.run(run_driver(setup, n))
            assert api is not None
            return run_api(api, setup, n)

        for path in paths:  # untimed: sign in and discover the endpoints once, as a worker would
            run(path, 1)
        for _ in range(args.rounds):
            for path in paths:
                results[path].append(run(path, args.n))
    report(results, args.n)


def report(results: dict[str, list[Timing]], n: int) -> None:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    print(f"create + delete {n} VMs (mean of {len(next(iter(results.values())))} round(s))")
    print(f"{'path':<8}{'create s':>10}{'delete s':>10}{'total s':>10}{'vs sdk':>9}")
    baseline = mean([t.total_s for t in results["sdk"]]) if "sdk" in results else None
    for path, timings in results.items():
        total = mean([t.total_s for t in timings])
        ratio = f"{total / baseline:.2f}x" if baseline else "-"
        print(
            f"{path:<8}{mean([t.create_s for t in timings]):>10.2f}"
            f"{mean([t.delete_s for t in timings]):>10.2f}{total:>10.2f}{ratio:>9}"
        )


if __name__ == "__main__":
    main()
