"""Pods through the whole service: kubeconfig upload, BI API, queue, worker, real cluster.

The service runs in this process (uvicorn thread, in-process worker) on a fresh PostgreSQL
database; the cluster is the AIO control plane.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client as k8s

from slices_blueprint.core.deps import API_PREFIX
from tests.conftest import free_port, fresh_database, make_settings, start_server
from tests.helpers import Api

from .support import wait_namespace_gone

pytestmark = pytest.mark.kubernetes


def test_pod_lifecycle_through_the_bi_api(
    kubeconfig_bytes: bytes,
    kube: k8s.CoreV1Api,
    pg_admin_url: str,
    tmp_path: Path,
) -> None:
    with fresh_database(pg_admin_url) as url:
        # the 1-CPU hollow node fits a 1-vCPU flavor next to other tests' pods only overcommitted
        settings = make_settings(tmp_path, url, free_port(), providers=["k8s"], kubernetes_cpu_request_fraction=0.01)
        server = start_server(settings, url)
        try:
            with httpx.Client(timeout=30) as http:
                _lifecycle(Api(server, http), http, kube, kubeconfig_bytes)
        finally:
            server.stop()


def _lifecycle(api: Api, http: httpx.Client, kube: k8s.CoreV1Api, kubeconfig: bytes) -> None:
    user = api.token("alice", "demo")
    upload = http.put(
        f"{api.live.url}{API_PREFIX}/credentials/kubernetes",
        headers={"Authorization": f"Bearer {user}"},
        json={"content": kubeconfig.decode(), "selected": "k8s-aio"},
    )
    assert upload.status_code == 200, upload.text
    key = yaml.safe_load(kubeconfig)["users"][0]["user"]["client-key-data"]
    assert key[:40] not in upload.text  # stored, never echoed

    admin = api.token("admin")
    catalog = {"friendly_name": f"k8s-{uuid.uuid4().hex[:6]}", "flavor_type": "k8s"}
    flavor = api.ok("POST", "/flavors", admin, 201, json=catalog | {"vcpus": 1, "ram_mib": 128})
    image = api.ok("POST", "/disk-images", admin, 201, json=catalog | {"location": "busybox:1.36"})

    experiment = api.token("alice", "demo", experiment=f"k8s-e2e-{uuid.uuid4().hex[:6]}")
    config = {"env": {"GREETING": "hello"}, "ports": [8080]}
    # the user's id-token in the body makes the task use the kubeconfig uploaded above
    tokens = [{"jwt": user}]
    task = api.create(experiment, ["web"], flavor["id"], image["id"], config=config, tokens=tokens)
    done = api.wait_task(experiment, task["id"], timeout=120)
    assert done["status"] == "succeeded", done
    (resource_id,) = done["resource_ids"]
    resource = api.ok("GET", f"/resources/{resource_id}", experiment)
    assert resource["status"] == "running", resource
    namespace, name = resource["provider_resource_id"].split("/")
    pod = kube.read_namespaced_pod(name, namespace)
    assert pod.metadata.annotations["slices.eu/resource-id"] == resource_id
    assert resource["access"]["ipv4"] == pod.status.pod_ip
    (container,) = pod.spec.containers
    assert container.image == "busybox:1.36"
    assert container.resources.limits == {"cpu": "1", "memory": "128Mi"}
    assert {e.name: e.value for e in container.env} == {"GREETING": "hello"}
    # the fake runtime keeps no logs: the API says so with the cluster's reason
    logs = api.call("GET", f"/resources/{resource_id}/logs", experiment)
    assert logs.status_code == 404 and logs.json()["detail"].startswith("no logs: the cluster has no logs for pod")
    # pods have no pause or stop: refused up front, the pod keeps running
    for action in ("pause", "stop"):
        refused = api.call("POST", f"/resources/{resource_id}/{action}", experiment)
        assert refused.status_code == 409 and f"k8s resources have no {action}" in refused.json()["detail"]
    assert api.ok("GET", f"/resources/{resource_id}", experiment)["status"] == "running"
    metrics = api.call("GET", f"/resources/{resource_id}/metrics", experiment)
    assert metrics.status_code == 404 and "k8s resources do not report any" in metrics.json()["detail"]

    deleting = api.ok("DELETE", f"/resources/{resource_id}", experiment, 202)
    assert api.wait_task(experiment, deleting["id"], timeout=120)["status"] == "succeeded"
    assert kube.list_namespaced_pod(namespace).items == []
    assert wait_namespace_gone(kube, namespace)
