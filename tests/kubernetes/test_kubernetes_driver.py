"""KubernetesDriver against the real control plane from ``k8s-apiserver.sh``.

Pods reach Running on the hollow kubelet without containers. Failures a kubelet would report
(CrashLoopBackOff, ImagePullBackOff, OOMKilled...) are produced the way a kubelet produces
them: by writing the pod's status subresource. Those pods are kept unscheduled (node selector
no node has), so that no kubelet owns them and overwrites the status the test writes.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.config import kube_config
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import (
    GuestFile,
    GuestService,
    NodeSpec,
    NotSupported,
    ProviderError,
    TransientProviderError,
)
from slices_blueprint.providers.endpoints import EndpointNotAllowed, EndpointPolicy
from slices_blueprint.providers.kubernetes.driver import KubernetesDriver
from slices_blueprint.providers.kubernetes.pods import (
    MANAGED_SELECTOR,
    RESOURCE_LABEL,
    label_value,
    namespace_name,
    owner_metadata,
    parse_config,
    pod_manifest,
    pod_name,
    resource_selector,
)
from tests.conftest import LOOPBACK_ALLOWED, LOOPBACK_POLICY

from .support import wait_namespace_gone, wait_pod

pytestmark = pytest.mark.kubernetes
NOWHERE = {"node_selector": {"slices.eu/test-no-such-node": "true"}}


def unschedulable(pod: k8s.V1Pod) -> bool:
    return any(
        c.type == "PodScheduled" and c.reason == "Unschedulable"
        for c in pod.status.conditions or []
    )


def pods_of(kube: k8s.CoreV1Api, spec: NodeSpec) -> list[k8s.V1Pod]:
    namespace = namespace_name(spec.experiment_id)
    return kube.list_namespaced_pod(
        namespace, label_selector=resource_selector(spec.resource_id)
    ).items


# ---------------------------------------------------------------- credentials


def _mutated(kubeconfig: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    config = yaml.safe_load(kubeconfig)
    change(config)
    return yaml.safe_dump(config).encode()


def _set_user(**user: Any) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        config["users"][0]["user"] = user

    return change


def _set_server(config: dict[str, Any]) -> None:
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"


async def test_validate_accepts_the_cluster_kubeconfig(kubeconfig_bytes: bytes) -> None:
    assert await KubernetesDriver.validate_credential(kubeconfig_bytes, None, LOOPBACK_POLICY) == "k8s-aio"
    assert await KubernetesDriver.validate_credential(kubeconfig_bytes, "k8s-aio", LOOPBACK_POLICY) == "k8s-aio"


async def test_a_cluster_on_a_non_public_address_needs_the_sites_permission(kubeconfig_bytes: bytes) -> None:
    with pytest.raises(EndpointNotAllowed, match=r"the kubeconfig's server https://127.0.0.1:6443 reaches 127.0.0.1"):
        await KubernetesDriver.validate_credential(kubeconfig_bytes, None, EndpointPolicy())
    with pytest.raises(EndpointNotAllowed, match="uploaded_endpoints_allowed"):
        KubernetesDriver.from_settings(Settings(), kubeconfig_bytes, "k8s-aio")


@pytest.mark.parametrize(
    ("change", "selected", "needle"),
    [
        (None, "elsewhere", r"context 'elsewhere' is not in the kubeconfig \(it has: k8s-aio\)"),
        (_set_server, None, "cannot reach the cluster at https://127.0.0.1:1"),
        (_set_user(token="not-a-valid-token"), None, r"rejected the credentials \(401"),
        (_set_user(), None, "not allowed|may not create"),  # anonymous: reaches, not authorised
        (
            _set_user(
                **{
                    "client-certificate": "/var/lib/k8s-aio/pki/admin.crt",
                    "client-key": "/var/lib/k8s-aio/pki/admin.key",
                }
            ),
            None,
            "file paths",
        ),
    ],
    ids=["unknown-context", "unreachable", "bad-token", "anonymous", "server-side-files"],
)
async def test_validate_refuses_with_a_reason(
    kubeconfig_bytes: bytes, change: Callable | None, selected: str | None, needle: str
) -> None:
    plaintext = _mutated(kubeconfig_bytes, change) if change else kubeconfig_bytes
    started = time.monotonic()
    with pytest.raises(ProviderError, match=needle):
        await KubernetesDriver.validate_credential(plaintext, selected, LOOPBACK_POLICY)
    assert time.monotonic() - started < 15


@retry(stop=stop_after_delay(30), wait=wait_fixed(0.2), retry=retry_if_result(lambda t: t is None))
def _service_account_token(kube: k8s.CoreV1Api, namespace: str) -> str | None:
    """The default service account's token, once the controllers have made both."""
    try:
        account = kube.read_namespaced_service_account("default", namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if not account.secrets:
        return None
    secret = kube.read_namespaced_secret(account.secrets[0].name, namespace)
    return base64.b64decode(secret.data["token"]).decode()


async def test_validate_names_missing_permissions(
    kubeconfig_bytes: bytes, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec]
) -> None:
    # a real identity without RBAC grants: a service account of a scratch namespace
    namespace = namespace_name(make_spec().experiment_id)
    kube.create_namespace({"metadata": {"name": namespace}})
    token = await asyncio.to_thread(_service_account_token, kube, namespace)
    plaintext = _mutated(kubeconfig_bytes, _set_user(token=token))
    with pytest.raises(ProviderError, match="may not create namespaces and create pods"):
        await KubernetesDriver.validate_credential(plaintext, None, LOOPBACK_POLICY)


@pytest.mark.parametrize(
    ("plaintext", "needle"), [(b"a: [", "not valid YAML"), (b"kind: Config", "no contexts")]
)
async def test_validate_refuses_non_kubeconfigs(plaintext: bytes, needle: str) -> None:
    with pytest.raises(ProviderError, match=needle):
        await KubernetesDriver.validate_credential(plaintext, None, LOOPBACK_POLICY)


def _scratch_files() -> set[str]:
    return set(glob.glob("/dev/shm/*")) | set(glob.glob(f"{tempfile.gettempdir()}/*"))


async def test_uploaded_kubeconfig_leaves_no_key_material_on_disk(
    kubeconfig_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = base64.b64decode(yaml.safe_load(kubeconfig_bytes)["users"][0]["user"]["client-key-data"])
    # the client caches its temporary files by content: start empty so that ours are written
    written: dict[str, str] = {}
    monkeypatch.setattr(kube_config, "_temp_files", written)
    before = _scratch_files()
    driver = KubernetesDriver.from_settings(Settings(uploaded_endpoints_allowed=LOOPBACK_ALLOWED), kubeconfig_bytes, "k8s-aio")
    try:
        cfg = driver.api_client.configuration
        assert (cfg.cert_file, cfg.key_file, cfg.ssl_ca_cert) == (None, None, None)
        assert (await driver.status("default/no-such-pod")).state == "gone"  # TLS still works
    finally:
        await driver.close()
    assert len(written) == 3  # CA, certificate and key went through temporary files...
    assert all(path.startswith("/dev/shm/slices-kube-") for path in written.values())
    assert not any(Path(path).exists() for path in written.values())  # ...that are gone
    new = _scratch_files() - before
    assert not [p for p in map(Path, new) if p.is_file() and key in p.read_bytes()]


# ---------------------------------------------------------------- lifecycle


async def test_create_runs_the_pod_we_asked_for(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    config = {
        "command": ["/bin/sh", "-c"],
        "args": ["sleep 3600"],
        "env": {"GREETING": "hello", "MODE": "test"},
        "ports": [8080, {"port": 53, "protocol": "UDP", "name": "dns"}],
        "volumes": [
            {"name": "scratch", "mount_path": "/scratch", "empty_dir": {"size_limit": "64Mi"}},
        ],
    }
    spec = make_spec("Web Server #1", vcpus=2, ram_mib=300, config=config)
    namespace = namespace_name(spec.experiment_id)
    # the experiment's namespace exists already (made before Pod Security labels were set)
    kube.create_namespace({"metadata": owner_metadata(spec, namespace, resource=False)})

    info = await driver.create(spec, progress)

    assert info.state == "running", info.reason
    assert info.provider_resource_id == f"{namespace}/{pod_name(spec)}"
    assert pod_name(spec).startswith("web-server-1-")
    assert [p for p, _ in progress.calls] == sorted(p for p, _ in progress.calls)
    assert progress.calls[-1] == (100, "running")
    pod = kube.read_namespaced_pod(pod_name(spec), namespace)
    assert pod.status.pod_ip == info.access.get("ipv4")
    assert pod.metadata.labels["slices.eu/resource-id"] == label_value(spec.resource_id)
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "slices-blueprint"
    assert pod.metadata.annotations["slices.eu/experiment-id"] == spec.experiment_id
    assert pod.metadata.annotations["slices.eu/project-id"] == spec.project_id
    (container,) = pod.spec.containers
    assert container.image == "busybox:1.36"
    assert container.resources.requests == {"cpu": "20m", "memory": "300Mi"}
    assert container.resources.limits == {"cpu": "2", "memory": "300Mi"}
    assert (container.command, container.args) == (["/bin/sh", "-c"], ["sleep 3600"])
    assert {e.name: e.value for e in container.env} == {"GREETING": "hello", "MODE": "test"}
    assert [(p.container_port, p.protocol) for p in container.ports] == [(8080, "TCP"), (53, "UDP")]
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["scratch"].empty_dir.size_limit == "64Mi"
    assert {m.mount_path for m in container.volume_mounts} == {"/scratch"}
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.termination_grace_period_seconds == driver.delete_grace == 0
    ns = kube.read_namespace(namespace)
    assert ns.metadata.annotations["slices.eu/experiment-id"] == spec.experiment_id
    assert ns.metadata.labels["slices.eu/project-id"] == label_value(spec.project_id)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"  # brought up to date


async def test_repeated_create_adopts_the_pod(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    spec = make_spec("twice")
    first = await driver.create(spec, progress)
    second = await driver.create(spec, progress)
    assert second.provider_resource_id == first.provider_resource_id
    assert second.provider_data["uid"] == first.provider_data["uid"]
    assert len(pods_of(kube, spec)) == 1


async def test_delete_is_idempotent_and_the_namespace_goes_with_the_last_pod(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    first = make_spec("first")
    second = make_spec("second", experiment_id=first.experiment_id)
    namespace = namespace_name(first.experiment_id)
    a = await driver.create(first, progress)
    b = await driver.create(second, progress)

    await driver.delete(a.provider_resource_id, progress)
    assert (await driver.status(a.provider_resource_id)).state == "gone"
    assert pods_of(kube, first) == []
    assert kube.read_namespace(namespace).metadata.deletion_timestamp is None  # b still lives

    await driver.delete(b.provider_resource_id, progress)
    await driver.delete(b.provider_resource_id, progress)  # already gone: success
    assert (await driver.status(b.provider_resource_id)).state == "gone"
    assert await asyncio.to_thread(wait_namespace_gone, kube, namespace)


async def test_create_in_a_terminating_namespace_is_retried_later(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    first = make_spec("first")
    await driver.create(first, progress)
    kube.delete_namespace(namespace_name(first.experiment_id))  # still holds a pod: lingers
    late = make_spec("late", experiment_id=first.experiment_id)
    with pytest.raises(TransientProviderError, match="is being deleted; retrying once it is gone"):
        await driver.create(late, progress)
    assert await asyncio.to_thread(wait_namespace_gone, kube, namespace_name(first.experiment_id))
    assert (await driver.create(late, progress)).state == "running"  # the task layer's retry


async def test_reset_recreates_the_pod(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    spec = make_spec("resettable")
    before = await driver.create(spec, progress)
    after = await driver.reset(before.provider_resource_id, spec, progress)
    assert after.state == "running"
    assert after.provider_resource_id == before.provider_resource_id
    assert after.provider_data["uid"] != before.provider_data["uid"]
    assert len(pods_of(kube, spec)) == 1


async def test_ssh_keys_reach_images_that_declare_where_they_read_them(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3 alice@example.org"]
    refused = make_spec("no-sshd", ssh_authorized_keys=keys)
    with pytest.raises(ProviderError, match="provision_mount"):
        await driver.create(refused, progress)
    assert pods_of(kube, refused) == []

    spec = make_spec(
        "sshd",
        ssh_authorized_keys=keys,
        userdata="#cloud-config\n",
        config={"provision_mount": "/run/slices"},
    )
    info = await driver.create(spec, progress)
    namespace, name = info.provider_resource_id.split("/")
    secret = kube.read_namespaced_secret(f"{name}-provision", namespace)
    assert set(secret.data) == {"authorized_keys", "user-data"}
    (container,) = kube.read_namespaced_pod(name, namespace).spec.containers
    assert "/run/slices" in {m.mount_path for m in container.volume_mounts}
    await driver.delete(info.provider_resource_id, progress)
    assert kube.list_namespaced_secret(namespace, label_selector=MANAGED_SELECTOR).items == []


async def test_files_reach_the_pod_in_its_own_secret_mounted_read_only(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    files = (GuestFile("/etc/qkd/app/sae.key", "KEY", 0o600), GuestFile("/etc/qkd/app/kme.env", "KME_URL=x\n"),
             GuestFile("/etc/qkd/other/ca.crt", "CA"))
    spec = make_spec("with-files", files=files)
    info = await driver.create(spec, progress)
    namespace, name = info.provider_resource_id.split("/")
    secret = kube.read_namespaced_secret(f"{name}-files", namespace)
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {
        "file-0": "KEY", "file-1": "KME_URL=x\n", "file-2": "CA"}
    assert secret.metadata.annotations[RESOURCE_LABEL] == spec.resource_id
    pod = kube.read_namespaced_pod(name, namespace).spec
    mounts = {m.mount_path: m for m in pod.containers[0].volume_mounts}
    assert {p: m.read_only for p, m in mounts.items() if p.startswith("/etc/qkd")} == {
        "/etc/qkd/app": True, "/etc/qkd/other": True}
    volume = next(v for v in pod.volumes if v.name == mounts["/etc/qkd/app"].name)
    assert volume.secret.secret_name == f"{name}-files"
    assert [(i.key, i.path, i.mode) for i in volume.secret.items] == [
        ("file-0", "sae.key", 0o600), ("file-1", "kme.env", 0o644)]
    await driver.delete(info.provider_resource_id, progress)
    assert kube.list_namespaced_secret(namespace, label_selector=MANAGED_SELECTOR).items == []


async def test_guest_services_open_the_pods_egress_to_them_alone(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    services = (GuestService("kme-a.qkd.internal", 443, "10.20.30.40", 47100),
                GuestService("kme-b.qkd.internal", 443, "kme.example.invalid", 47101))
    spec = make_spec("with-services", guest_services=services)
    info = await driver.create(spec, progress)
    namespace, name = info.provider_resource_id.split("/")
    networking = driver.networking
    policy = networking.read_namespaced_network_policy(f"{name}-services", namespace).spec
    pod_labels = kube.read_namespaced_pod(name, namespace).metadata.labels
    assert policy.pod_selector.match_labels.items() <= pod_labels.items()  # this pod alone
    assert policy.policy_types == ["Egress"]
    assert [([t.ip_block.cidr for t in r.to], [(p.protocol, p.port) for p in r.ports]) for r in policy.egress] == [
        (["10.20.30.40/32"], [("TCP", 47100)])]  # a host name cannot be allowed: left out
    await driver.delete(info.provider_resource_id, progress)
    left = networking.list_namespaced_network_policy(namespace, label_selector=MANAGED_SELECTOR).items
    assert all(p.metadata.name != f"{name}-services" for p in left)


# ---------------------------------------------------------------- the truth about failures


@pytest.mark.parametrize(
    ("fields", "needle"),
    [({"vcpus": 5000}, "Insufficient cpu"), ({"config": NOWHERE}, "node selector|node affinity")],
    ids=["impossible-cpu", "impossible-node-selector"],
)
async def test_unschedulable_pod_fails_with_the_schedulers_message(
    driver: KubernetesDriver,
    new_driver: Callable[..., KubernetesDriver],
    make_spec: Callable[..., NodeSpec],
    progress: Any,
    fields: dict,
    needle: str,
) -> None:
    spec = make_spec("unplaceable", **fields)
    with pytest.raises(ProviderError, match=needle) as failure:
        await driver.create(spec, progress)
    assert str(failure.value).startswith("Unschedulable: 0/1 nodes are available")
    prid = f"{namespace_name(spec.experiment_id)}/{pod_name(spec)}"
    assert (await driver.status(prid)).state == "error"  # the pod is kept for inspection
    within_grace = await new_driver(unschedulable_grace=3600.0).status(prid)
    assert (within_grace.state, within_grace.reason.split(":")[0]) == (
        "provisioning",
        "Unschedulable",
    )
    await driver.delete(prid, progress)
    assert (await driver.status(prid)).state == "gone"


def _container_status(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {
        "name": "main",
        "image": "busybox:1.36",
        "imageID": "",
        "ready": False,
        "restartCount": 4,
        "state": state,
    }
    return status | ({"lastState": last} if last else {})


KUBELET_REPORTS = {
    "CrashLoopBackOff": _container_status(
        {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container",
            }
        },
        {"terminated": {"reason": "Error", "exitCode": 1}},
    ),
    "ImagePullBackOff": _container_status(
        {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope:1"'}}
    ),
    "CreateContainerConfigError": _container_status(
        {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}
    ),
    "OOMKilled": _container_status({"terminated": {"reason": "OOMKilled", "exitCode": 137}}),
}


@pytest.mark.parametrize("reason", sorted(KUBELET_REPORTS))
async def test_kubelet_reported_failure_ends_create_with_its_reason(
    kube: k8s.CoreV1Api,
    new_driver: Callable[..., KubernetesDriver],
    make_spec: Callable[..., NodeSpec],
    progress: Any,
    reason: str,
) -> None:
    # a grace far beyond the test: only the kubelet-style status can end the wait
    driver = new_driver(ready_timeout=120.0, unschedulable_grace=3600.0, delete_grace=0)
    spec = make_spec("failing", config=NOWHERE)
    namespace, name = namespace_name(spec.experiment_id), pod_name(spec)
    creating = asyncio.create_task(driver.create(spec, progress))
    try:
        await asyncio.to_thread(wait_pod, kube, namespace, name, unschedulable)
        written = time.monotonic()
        patch = {"status": {"containerStatuses": [KUBELET_REPORTS[reason]]}}
        await asyncio.to_thread(kube.patch_namespaced_pod_status, name, namespace, patch)
        with pytest.raises(ProviderError, match=f"^{reason}") as failure:
            await asyncio.wait_for(creating, 20)
        assert time.monotonic() - written < 5  # the watch saw it; no waiting for a timeout
        status = await driver.status(f"{namespace}/{name}")
        assert (status.state, status.reason) == ("error", str(failure.value))
        if reason == "CrashLoopBackOff":
            assert "last exit: Error, code 1" in status.reason
    finally:
        creating.cancel()


# ---------------------------------------------------------------- reconciler and logs


async def test_list_managed_finds_an_orphan_pod(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    spec = make_spec("orphan")
    info = await driver.create(spec, progress)
    managed = {node.provider_resource_id: node for node in await driver.list_managed()}
    assert managed[info.provider_resource_id].resource_id == spec.resource_id
    assert managed[info.provider_resource_id].state == "running"


async def test_list_managed_ignores_our_label_outside_our_namespaces(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec]
) -> None:
    spec = make_spec("stranger")
    body = pod_manifest(spec, parse_config(spec), f"stranger-{spec.resource_id[-8:]}")
    pod = kube.create_namespaced_pod("default", body)
    try:
        listed = {node.provider_resource_id for node in await driver.list_managed()}
        assert f"default/{pod.metadata.name}" not in listed
    finally:
        kube.delete_namespaced_pod(pod.metadata.name, "default", grace_period_seconds=0)


async def test_logs_on_a_runtime_without_logs_say_so(
    driver: KubernetesDriver, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    info = await driver.create(make_spec("quiet"), progress)
    with pytest.raises(NotSupported, match=f"no logs for pod {info.provider_resource_id}"):
        await driver.logs(info.provider_resource_id, tail_lines=10)
    with pytest.raises(ProviderError, match="no longer exists"):
        await driver.logs(f"{info.provider_resource_id.split('/')[0]}/no-such-pod")


async def test_a_fresh_namespace_without_token_is_ridden_out(
    driver: KubernetesDriver, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    # The AIO cluster answers this (500) when a pod that mounts a token is created in a
    # namespace younger than its token; ours mount none, so the refusal is replayed here.
    body = (
        '{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServerTimeout","code":500,'
        '"message":"No API token found for service account \\"default\\", retry after the token '
        'is automatically created and added to the service account"}'
    )
    real, calls = driver.core.create_namespaced_pod, []

    def refuse_twice(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) <= 2:
            raise k8s.ApiException(status=500, reason="Internal Server Error", body=body)
        return real(*args, **kwargs)

    driver.core.create_namespaced_pod = refuse_twice
    info = await driver.create(make_spec("patient"), progress)
    assert info.state == "running" and len(calls) == 3


async def test_persistent_claim_needs_a_class_the_cluster_can_bind(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec], progress: Any
) -> None:
    volume = {"name": "data", "mount_path": "/data", "persistent_claim": {"size": "1Gi"}}
    spec = make_spec("stateful", config={"storage_class": "no-such-class", "volumes": [volume]})
    namespace = namespace_name(spec.experiment_id)
    with pytest.raises(ProviderError, match="^Unschedulable: .*PersistentVolumeClaims"):
        await driver.create(spec, progress)
    (claim,) = kube.list_namespaced_persistent_volume_claim(
        namespace, label_selector=resource_selector(spec.resource_id)
    ).items
    assert claim.spec.storage_class_name == "no-such-class"
    assert claim.spec.resources.requests == {"storage": "1Gi"}
    await driver.delete(f"{namespace}/{pod_name(spec)}", progress)
    assert await asyncio.to_thread(wait_namespace_gone, kube, namespace)
