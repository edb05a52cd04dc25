"""Issue 15, case 2: the cloud fails mid-operation.

The whole service (real HTTP, PostgreSQL, queue, in-process worker) drives the real test
clouds; while it creates some machines and deletes others, the cloud's API process is
stopped, left down for a while, then started again with its own command line. Every
accepted request must end final and match the provider: no resource lost, none created
twice, nothing orphaned in the cloud, no task left running; meanwhile the tasks say they
are retrying and why.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s

from slices_blueprint.core.deps import API_PREFIX
from slices_blueprint.providers.kubernetes.pods import (
    MANAGED_SELECTOR,
    RESOURCE_LABEL,
    namespace_name,
)
from slices_blueprint.providers.openstack.driver import META_RESOURCE
from tests.conftest import LiveServer, service_of_its_own
from tests.faults.cloud_support import (
    K8S_LOGS,
    K8S_RUN,
    OPENSTACK_LOGS,
    OPENSTACK_RUN,
    ScriptService,
    outage,
)
from tests.helpers import Api, wait_for
from tests.kubernetes.cluster_fixture import KUBECONFIG
from tests.openstack.support import PREFIX, Cloud

KEPT = 3  # machines made before the outage, deleted during it
MADE = 4  # machines requested during the outage
DOWN_S = 20.0  # how long the API stays down (its restart comes on top)
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Report:
    """One row of the issue's table."""

    case: str
    injected: str
    accepted: int = 0
    final: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # machines the provider lost, made anew
    outage_s: float = 0.0
    recovery_s: float = 0.0

    def line(self) -> str:
        final = ", ".join(f"{n} {s}" for s, n in sorted(self.final.items()))
        return (f"| {self.case} | {self.injected} | {self.accepted} | {final} | "
                f"{len(self.lost)}/{len(self.duplicated)}/{len(self.orphaned)} | "
                f"{len(self.replaced)} replaced | down {self.outage_s:.1f} s, all final {self.recovery_s:.1f} s after it answered |")


Listing = Callable[[], dict[str, list[str]]]
"""The provider's objects carrying our tag: resource id -> provider ids."""


def _task(api: Api, token: str, task_id: str) -> dict:
    return api.ok("GET", f"/tasks/{task_id}", token)


def _leaves(task: dict) -> list[dict]:
    return task["subtasks"] or [task]


def run_outage(api: Api, token: str, catalog: tuple[str, str], services: list[ScriptService],
               listed: Listing, report: Report, *, prefix: str,
               early: Sequence[ScriptService] = ()) -> Report:
    """Make ``KEPT`` machines; then request ``MADE`` more and delete the first ones, take the
    ``services`` down for ``DOWN_S`` seconds once a requested machine exists at the provider,
    bring them back, and compare every resource with what the provider lists. The ``early``
    services go down before the requests are sent; all come back together."""
    flavor, image = catalog
    before = api.create(token, [f"{prefix}-kept-{i}" for i in range(KEPT)], flavor, image)
    assert api.wait_task(token, before["id"], timeout=180)["status"] == "succeeded"
    kept = before["resource_ids"]

    with outage(*early) as down:
        creating = api.create(token, [f"{prefix}-made-{i}" for i in range(MADE)], flavor, image)
        deleting = [api.ok("DELETE", f"/resources/{rid}", token, 202)["id"] for rid in kept]
        task_ids = [creating["id"], *deleting]
        report.accepted = MADE + KEPT
        made = creating["resource_ids"]
        under_way = wait_for(lambda: {rid: ids for rid, ids in listed().items() if rid in made},
                             60, "a requested machine at the provider", interval=0.05)
        down.take_down(*services)

        def leaves() -> list[dict]:
            return [leaf for tid in task_ids for leaf in _leaves(_task(api, token, tid))]

        # meanwhile: nothing given up yet, and the tasks say what they wait for
        retrying = wait_for(lambda: [t for t in leaves() if (t["message"] or "").startswith(
            "retrying after: ")], DOWN_S, "a task saying it retries")
        assert not [t for t in leaves() if t["status"] in ("failed", "cancelled")], leaves()
        statuses = {r["status"] for r in api.ok("GET", "/resources?include_deleted=true", token)}
        assert "error" not in statuses, statuses
        time.sleep(max(0.0, down.last_stopped_at + DOWN_S - time.monotonic()))
    back = down.answering_at
    report.outage_s = back - down.stopped_at
    print(f"\nwhile down, e.g.: {retrying[0]['message']}")

    tasks = [api.wait_task(token, tid, timeout=240) for tid in task_ids]
    report.recovery_s = time.monotonic() - back
    stuck = [t for task in tasks for t in _leaves(task) if t["status"] not in FINAL]
    assert not stuck, stuck
    assert [t["status"] for t in tasks] == ["succeeded"] * len(tasks), tasks

    resources = {r["id"]: r for r in api.ok("GET", "/resources?include_deleted=true", token)}
    report.final = Counter(r["status"] for r in resources.values())
    report.lost = [rid for rid in made if resources.get(rid, {}).get("status") != "running"]
    report.lost += [rid for rid in kept if resources.get(rid, {}).get("status") != "deleted"]
    provider = listed()
    report.duplicated = [rid for rid, ids in provider.items() if len(ids) > 1]
    live = {rid: resources[rid]["provider_resource_id"] for rid in made if rid in resources}
    report.orphaned = [pid for rid, ids in provider.items() for pid in ids if live.get(rid) != pid]
    report.lost += [rid for rid, pid in live.items() if pid not in provider.get(rid, [])]
    report.replaced = [rid for rid, ids in under_way.items() if live.get(rid) not in ids]
    print(report.line())
    assert (report.lost, report.duplicated, report.orphaned) == ([], [], []), report
    for rid in made:  # leave nothing behind in the shared cloud
        api.ok("DELETE", f"/resources/{rid}", token, 202)
    wait_for(lambda: not listed(), 180, "the made machines deleted again", interval=1)
    return report


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def _answers(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=3).status_code < 500


# ---------------------------------------------------------------------------- OpenStack

@pytest.fixture
def vm_site(cloud: Cloud, pg_admin_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The service with the throwaway project as its site-wide cloud (its servers are this
    test's alone), trying an operation up to 7 times: its retries wait 2 + 4 + ... + 64 s,
    longer than nova-api takes to stop and start again on a busy machine."""
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_bytes(cloud.project_clouds_yaml)
    with service_of_its_own(pg_admin_url, tmp_path, providers=["vm"], task_max_attempts=7,
                            openstack_clouds_yaml=clouds_yaml, openstack_cloud="throwaway") as server:
        yield server


@pytest.mark.openstack
@pytest.mark.timeout(420)
def test_nova_api_outage_while_creating_and_deleting(
    cloud: Cloud, vm_site: LiveServer, http_client: httpx.Client
) -> None:
    api = Api(vm_site, http_client)
    nova_api = ScriptService("nova-api", OPENSTACK_RUN, OPENSTACK_LOGS,
                             _answers("http://127.0.0.1:8774/"))
    report = run_outage(api, _experiment_token(api), _vm_catalog(api, cloud), [nova_api],
                        _servers(cloud),
                        Report("cloud: nova-api stopped", f"nova-api SIGTERM for {DOWN_S:g} s"),
                        prefix=f"{PREFIX}-o")
    assert report.final == Counter(running=MADE, deleted=KEPT)


def _experiment_token(api: Api) -> str:
    return api.token("alice", "demo", f"outage-{uuid.uuid4().hex[:6]}")


def _vm_catalog(api: Api, cloud: Cloud) -> tuple[str, str]:
    """The test cloud's flavor and image as the site's catalog sync imported them: their ids."""
    answer = api.http.post(f"{api.live.url}{API_PREFIX}/catalog/sync", json={"flavor_type": "vm"},
                           headers={"Authorization": f"Bearer {api.token('admin')}"})
    assert answer.status_code == 200, answer.text
    user = api.token("alice")
    flavor = next(f for f in api.ok("GET", "/flavors", user) if f["provider_ref"] == cloud.flavor_id)
    image = next(i for i in api.ok("GET", "/disk-images", user) if i["location"] == cloud.image_id)
    return flavor["id"], image["id"]


def _servers(cloud: Cloud) -> Listing:
    """The throwaway project's servers carrying our resource id, as the admin sees them."""

    def listed() -> dict[str, list[str]]:
        servers: dict[str, list[str]] = {}
        for s in cloud.admin.compute.servers(details=True, all_projects=True,
                                             project_id=cloud.project_id):
            if s.status != "DELETED" and META_RESOURCE in (s.metadata or {}):
                servers.setdefault(s.metadata[META_RESOURCE], []).append(s.id)
        return servers

    return listed


@pytest.mark.openstack
@pytest.mark.timeout(480)
def test_nova_api_and_compute_outage_while_creating_and_deleting(
    cloud: Cloud, vm_site: LiveServer, http_client: httpx.Client
) -> None:
    """Nova's compute service stopped too, before the requests: the servers wait in BUILD;
    those it had taken end ERROR when it starts again (nova's rule, without a fault), and
    the creates replace them (``Report.replaced``: how many, which depends on timing)."""
    api = Api(vm_site, http_client)
    nova_api = ScriptService("nova-api", OPENSTACK_RUN, OPENSTACK_LOGS,
                             _answers("http://127.0.0.1:8774/"))

    def compute_reports() -> bool:
        """The restarted nova-compute has reported to nova since it started."""
        started = nova_compute.started_at
        services = cloud.admin.compute.services(binary="nova-compute")
        return started is not None and any(
            s.state == "up" and s.updated_at
            and datetime.fromisoformat(s.updated_at).replace(tzinfo=UTC) > started
            for s in services)

    nova_compute = ScriptService("nova-compute", OPENSTACK_RUN, OPENSTACK_LOGS, compute_reports)
    report = run_outage(api, _experiment_token(api), _vm_catalog(api, cloud), [nova_api],
                        _servers(cloud),
                        Report("cloud: nova-compute, then nova-api stopped",
                               f"nova-compute SIGTERM before the requests, nova-api {DOWN_S:g} s "
                               "after the first server exists"),
                        prefix=f"{PREFIX}-c", early=[nova_compute])
    assert report.final == Counter(running=MADE, deleted=KEPT)


# ---------------------------------------------------------------------------- Kubernetes

@pytest.fixture
def pod_site(kubeconfig_bytes: bytes, pg_admin_url: str, tmp_path: Path
             ) -> Iterator[LiveServer]:
    """The service with the AIO cluster as its site-wide cluster (pods: 1/100 of a CPU each,
    no termination grace), trying an operation up to 7 times."""
    with service_of_its_own(pg_admin_url, tmp_path, providers=["k8s"], task_max_attempts=7,
                            kubernetes_kubeconfig=KUBECONFIG, kubernetes_cpu_request_fraction=0.01,
                            kubernetes_delete_grace_seconds=0) as server:
        yield server


@pytest.mark.kubernetes
@pytest.mark.timeout(420)
def test_kube_apiserver_outage_while_creating_and_deleting(
    kube: k8s.CoreV1Api, pod_site: LiveServer, http_client: httpx.Client
) -> None:
    api = Api(pod_site, http_client)
    admin = api.token("admin")
    common = {"friendly_name": f"outage-{uuid.uuid4().hex[:6]}", "flavor_type": "k8s"}
    flavor = api.ok("POST", "/flavors", admin, 201, json=common | {"vcpus": 1, "ram_mib": 64})
    image = api.ok("POST", "/disk-images", admin, 201, json=common | {"location": "busybox:1.36"})
    token = api.token("alice", "demo", f"outage-{uuid.uuid4().hex[:6]}")

    def namespaces() -> set[str]:
        resources = api.ok("GET", "/resources?include_deleted=true", token)
        return {namespace_name(r["experiment_id"]) for r in resources}

    def listed() -> dict[str, list[str]]:
        pods: dict[str, list[str]] = {}
        for namespace in namespaces():
            for pod in kube.list_namespaced_pod(namespace, label_selector=MANAGED_SELECTOR).items:
                rid = (pod.metadata.annotations or {}).get(RESOURCE_LABEL, "")
                pods.setdefault(rid, []).append(f"{namespace}/{pod.metadata.name}")
        return pods

    def ready() -> bool:  # the API server answers from etcd again
        return kube.list_namespace(limit=1, _request_timeout=3) is not None

    apiserver = ScriptService("kube-apiserver", K8S_RUN, K8S_LOGS, ready)
    try:
        report = run_outage(
            api, token, (flavor["id"], image["id"]), [apiserver], listed,
            Report("cloud: kube-apiserver stopped", f"kube-apiserver SIGTERM for {DOWN_S:g} s"),
            prefix="p")
    finally:
        for namespace in namespaces():
            try:
                kube.delete_namespace(namespace, grace_period_seconds=0)
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise
    assert report.final == Counter(running=MADE, deleted=KEPT)

