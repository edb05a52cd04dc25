"""Create and delete N pods through our BI API, through KubernetesDriver, and directly.

Three ways, same cluster, pod shape and concurrency, alternating in one process for a few
rounds (the hollow kubelet's sync loops make single runs noisy; medians are compared):
- directly: what a careful script does with the Kubernetes client: create the namespace and
  every pod, follow them all with ONE namespace watch until Ready, delete them, follow the
  same way until gone;
- KubernetesDriver: ``create`` for every pod at once, then ``delete`` for every pod (namespace
  handling, adoption lookup, a watch per pod, namespace removal after the last pod);
- BI API: the service in this process (uvicorn + in-process worker, fresh PostgreSQL database
  of BENCH_PG, operator kubeconfig): one POST /resources with N resources, wait for the task,
  DELETE each, wait for those tasks (polling GET /tasks every 0.2 s).
Times cover create + Ready + delete + gone; the ratio is to the direct median.

    /tmp/venv/bin/python bench/bench_kubernetes.py [-n 10] [-r 3] [--no-api] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import uvicorn
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from tenacity import retry, retry_if_exception, retry_if_result, stop_after_delay, wait_fixed

from slices_blueprint.app import create_app
from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.deps import BI_PREFIX
from slices_blueprint.core.dev_issuer import mint_dev_token
from slices_blueprint.core.ids import format_id, new_uuid
from slices_blueprint.core.logging import configure_logging
from slices_blueprint.providers.base import NodeSpec
from slices_blueprint.providers.kubernetes.driver import KubernetesDriver
from slices_blueprint.providers.kubernetes.pods import (
    namespace_name,
    owner_metadata,
    parse_config,
    pod_manifest,
    pod_name,
)

CPU_FRACTION = 0.01  # the test cluster's hollow node offers 1 CPU
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def specs(count: int) -> list[NodeSpec]:
    """``count`` small pods in one fresh experiment."""
    experiment = format_id("exp", "bench", new_uuid())
    project = format_id("proj", "bench", new_uuid())
    return [
        NodeSpec(
            resource_id=format_id("res", "bench", new_uuid()),
            name=f"bench-{i}",
            experiment_id=experiment,
            project_id=project,
            image_location="busybox:1.36",
            image_default_username=None,
            flavor_ref=None,
            vcpus=1,
            ram_mib=64,
            disk_mb=0,
        )
        for i in range(count)
    ]


async def _quiet(percent: int, message: str) -> None:
    """Progress sink: the benchmark measures time, not messages."""


async def through_driver(kubeconfig: Path, batch: list[NodeSpec]) -> float:
    settings = Settings(kubernetes_kubeconfig=kubeconfig, kubernetes_cpu_request_fraction=CPU_FRACTION)
    driver = KubernetesDriver.from_settings(settings, None, None)
    started = time.perf_counter()
    try:
        nodes = await asyncio.gather(*(driver.create(spec, _quiet) for spec in batch))
        await asyncio.gather(*(driver.delete(n.provider_resource_id, _quiet) for n in nodes))
    finally:
        await driver.close()
    return time.perf_counter() - started


def _follow(core: k8s.CoreV1Api, namespace: str, since: str, names: set[str], done: str) -> None:
    """One namespace watch from ``since`` until every pod in ``names`` is Ready or gone."""
    pending = set(names)
    stream = watch.Watch().stream(
        core.list_namespaced_pod, namespace, resource_version=since, timeout_seconds=300
    )
    for event in stream:
        pod = event["object"]
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if (done == "gone" and event["type"] == "DELETED") or (done == "ready" and ready):
            pending.discard(pod.metadata.name)
        if not pending:
            stream.close()
            return
    raise TimeoutError(f"{len(pending)} pods not {done} after 300 s")


def _token_missing(exc: BaseException) -> bool:
    return (
        isinstance(exc, k8s.ApiException)
        and exc.status == 403
        and "service account" in str(exc.body)
    )


@retry(retry=retry_if_exception(_token_missing), stop=stop_after_delay(30), wait=wait_fixed(0.1))
def _create_with_token_retry(core: k8s.CoreV1Api, namespace: str, body: dict) -> None:
    """Fresh namespaces lack a service-account token for a moment (Kubernetes 1.20)."""
    core.create_namespaced_pod(namespace, body)


def directly(kubeconfig: Path, batch: list[NodeSpec], workers: int) -> float:
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = workers
    core = k8s.CoreV1Api(k8s.ApiClient(cfg))
    namespace = f"{namespace_name(batch[0].experiment_id)[:50]}-direct"
    bodies = [
        pod_manifest(spec, parse_config(spec), pod_name(spec), CPU_FRACTION) for spec in batch
    ]
    names = {body["metadata"]["name"] for body in bodies}
    started = time.perf_counter()
    core.create_namespace({"metadata": owner_metadata(batch[0], namespace, resource=False)})
    since = core.list_namespaced_pod(namespace).metadata.resource_version
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda body: _create_with_token_retry(core, namespace, body), bodies))
        _follow(core, namespace, since, names, "ready")
        since = core.list_namespaced_pod(namespace).metadata.resource_version
        list(pool.map(lambda name: core.delete_namespaced_pod(name, namespace), names))
        _follow(core, namespace, since, names, "gone")
    core.delete_namespace(namespace)
    return time.perf_counter() - started


def _fresh_database() -> str:
    name = f"bench_k8s_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG.rsplit('/', 1)[0]}/{name}"
    migrations.upgrade(url)
    return url


def _drop_database(url: str) -> None:
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _serve(settings: Settings, database_url: str) -> tuple[uvicorn.Server, threading.Thread]:
    app = create_app(settings, database_url, run_worker_inside=True)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _until(lambda: server.started)
    return server, thread


@retry(
    stop=stop_after_delay(600), wait=wait_fixed(0.2), retry=retry_if_result(lambda done: not done)
)
def _until(done: Callable[[], bool]) -> bool:
    """Poll ``done`` (the API offers no push for task completion); tenacity gives up at 600 s."""
    return done()


def _wait_tasks(http: httpx.Client, token: str, task_ids: list[str]) -> list[dict]:
    def finished() -> bool:
        tasks[:] = [
            http.get(f"{BI_PREFIX}/tasks/{t}", headers=_auth(token)).json() for t in task_ids
        ]
        return all(t["status"] in ("succeeded", "failed", "cancelled") for t in tasks)

    tasks: list[dict] = []
    _until(finished)
    failed = [t for t in tasks if t["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} tasks did not succeed: {failed[0]}")
    return tasks


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def through_api(kubeconfig: Path, count: int) -> float:
    """POST /resources with ``count`` k8s resources, wait, DELETE each, wait; in-process worker."""
    database_url = _fresh_database()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            kubernetes_cpu_request_fraction=CPU_FRACTION,  # the 1-CPU test node needs overcommit
            data_dir=Path(data_dir),
            database_url=database_url,
            host="127.0.0.1",
            port=_free_port(),
            dev_mode=True,
            providers=["k8s"],
            site_id="bench1",
            kubernetes_kubeconfig=kubeconfig,
            trusted_issuers=[],
            worker_concurrency=count,
        )
        server, thread = _serve(settings, database_url)
        try:
            with httpx.Client(base_url=settings.service_url, timeout=60) as http:
                return _api_round(http, settings, count)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            _drop_database(database_url)


def _api_round(http: httpx.Client, settings: Settings, count: int) -> float:
    admin = mint_dev_token(settings, user="admin", project="bench")
    catalog = {"friendly_name": "k8s-bench", "flavor_type": "k8s"}
    flavor = http.post(
        f"{BI_PREFIX}/flavors",
        headers=_auth(admin),
        json=catalog | {"vcpus": 1, "ram_mib": 64, "disk_mb": 0},
    ).json()
    image = http.post(
        f"{BI_PREFIX}/disk-images",
        headers=_auth(admin),
        json=catalog | {"location": "busybox:1.36"},
    ).json()
    token = mint_dev_token(
        settings, user="alice", project="bench", experiment=f"k8s-{uuid.uuid4().hex[:6]}"
    )
    resources = [
        {"friendly_name": f"bench-{i}", "flavor_id": flavor["id"], "disk_image_id": image["id"]}
        for i in range(count)
    ]
    started = time.perf_counter()
    answer = http.post(
        f"{BI_PREFIX}/resources",
        headers=_auth(token),
        json={"request_id": str(uuid.uuid4()), "resources": resources},
    )
    answer.raise_for_status()
    (created,) = _wait_tasks(http, token, [answer.json()["id"]])
    deletes = [
        http.delete(f"{BI_PREFIX}/resources/{rid}", headers=_auth(token)).json()["id"]
        for rid in created["resource_ids"]
    ]
    _wait_tasks(http, token, deletes)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--pods", type=int, default=10)
    parser.add_argument("-r", "--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--kubeconfig", type=Path, default=Path("/var/lib/k8s-aio/kubeconfig"))
    parser.add_argument("--no-api", action="store_true", help="skip the run through the service")
    args = parser.parse_args()
    configure_logging("WARNING")
    runs: dict[str, Callable[[], float]] = {
        "kubernetes client directly": lambda: directly(
            args.kubeconfig, specs(args.pods), args.pods
        ),
        "KubernetesDriver": lambda: asyncio.run(through_driver(args.kubeconfig, specs(args.pods))),
    }
    if not args.no_api:
        runs["BI API (POST/DELETE + worker)"] = lambda: through_api(args.kubeconfig, args.pods)
    print(f"{args.pods} pods, create + wait Ready + delete + wait gone, {args.rounds} rounds")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(1, args.rounds + 1):
        for name, run in runs.items():
            times[name].append(run())
        print(f"round {round_}: " + "  ".join(f"{t[-1]:6.2f} s" for t in times.values()))
    direct = statistics.median(times["kubernetes client directly"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<30} median {median:7.2f} s   ratio to direct {median / direct:5.2f}")


if __name__ == "__main__":
    main()
