"""Experiment pods run locked down and mount only what slices-blueprint made for them.

Pure tests check the request_config rules and manifests; the API test sends the attack (a pod
mounting a host path, a service-account token, a foreign Secret) through the real BI API and
gets a 422 before anything is recorded; the ``kubernetes`` tests run against the real control
plane (tests/kubernetes fixtures) and read back what the API server stored.

The test control plane is Kubernetes v1.20 with a hollow kubelet: it has no Pod Security
admission (1.23+) and no CNI enforcing NetworkPolicy, so these tests show the namespace labels,
the NetworkPolicy and the securityContexts are created exactly as specified, not that the
cluster enforces them; that is the cluster's job on a production site.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from slices_blueprint.providers.base import NodeSpec, ProviderError
from slices_blueprint.providers.kubernetes.driver import KubernetesDriver
from slices_blueprint.providers.kubernetes.pods import (
    NETWORK_POLICY,
    check_config,
    namespace_name,
    network_policy_manifest,
    pod_manifest,
    pod_name,
)
from tests.conftest import LiveServer
from tests.helpers import Api
from tests.kubernetes.conftest import (  # noqa: F401 (fixtures)
    make_spec,
    new_driver,
    progress,
)
from tests.kubernetes.test_kubernetes_driver import _service_account_token, pods_of

CLUSTER_NET = ipaddress.ip_network("44.128.0.0/16")  # a cluster's public pod range (config only)

FOREIGN_VOLUMES = [
    ({"name": "root", "mount_path": "/host", "host_path": {"path": "/"}}, "host_path"),
    ({"name": "root", "mount_path": "/host", "hostPath": {"path": "/"}}, "hostPath"),
    ({"name": "cfg", "mount_path": "/cfg", "config_map": "kube-root-ca.crt"}, "config_map"),
    ({"name": "t", "mount_path": "/t", "projected": {"sources": []}}, "projected"),
    ({"name": "t", "mount_path": "/t", "service_account_token": {"path": "t"}},
     "service_account_token"),
    ({"name": "t", "mount_path": "/t", "secret": "default-token-x7k2p"}, "default-token-x7k2p"),
    ({"name": "t", "mount_path": "/t", "secret": "app-creds"}, "app-creds"),
]
FOREIGN_POD_FIELDS = ["host_network", "hostPID", "privileged", "security_context", "service_account"]


def spec(**fields: Any) -> NodeSpec:
    values: dict[str, Any] = {
        "resource_id": f"res_{uuid.uuid4().hex}", "name": "n", "experiment_id": "exp_1",
        "project_id": "proj_1", "image_location": "busybox:1.36", "image_default_username": None,
        "flavor_ref": None, "vcpus": 1, "ram_mib": 128, "disk_mb": 1024,
    }
    return NodeSpec(**(values | fields))


# ------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(("volume", "needle"), FOREIGN_VOLUMES, ids=[n for _, n in FOREIGN_VOLUMES])
def test_volumes_we_did_not_make_are_refused(volume: dict, needle: str) -> None:
    with pytest.raises(ProviderError, match=f"volumes.0.*{needle}"):
        KubernetesDriver.check_request_config({"volumes": [volume]})


@pytest.mark.parametrize("field", FOREIGN_POD_FIELDS)
def test_pod_level_escapes_are_refused(field: str) -> None:
    with pytest.raises(ProviderError, match=f"{field}: Extra inputs are not permitted"):
        KubernetesDriver.check_request_config({field: True})


def test_a_provision_secret_name_is_accepted() -> None:
    volume = {"name": "keys", "mount_path": "/k", "secret": "web-1a2b3c4d-provision"}
    assert check_config({"volumes": [volume]}).volumes[0].secret == "web-1a2b3c4d-provision"


@pytest.mark.parametrize("level", ["restricted", "baseline"])
def test_every_container_is_locked_down(level: str) -> None:
    s = spec()
    pod = pod_manifest(s, check_config({}), pod_name(s), pod_security=level)["spec"]
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"}
    assert context.get("runAsNonRoot") is pod["securityContext"].get("runAsNonRoot") is (
        True if level == "restricted" else None)
    uid = 65534 if level == "restricted" else None
    assert pod["securityContext"].get("runAsUser") == pod["securityContext"].get("fsGroup") == uid
    assert (pod["hostNetwork"], pod["hostPID"], pod["hostIPC"]) == (False, False, False)
    assert pod["automountServiceAccountToken"] is False


def test_network_policy_allows_the_internet_only() -> None:
    policy = network_policy_manifest(spec(), [CLUSTER_NET])["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"from": [{"podSelector": {}}]}]
    own, dns, internet = policy["egress"]
    assert own == {"to": [{"podSelector": {}}]}
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    v4, v6 = (block["ipBlock"] for block in internet["to"])
    assert (v4["cidr"], v6["cidr"]) == ("0.0.0.0/0", "::/0")
    blocked = [ipaddress.ip_network(n) for n in v4["except"] + v6["except"]]
    for target in ("10.1.2.3", "127.0.0.1", "169.254.169.254", "172.16.5.5", "192.168.1.1",
                   "100.64.0.1", "44.128.3.4", "::1", "fe80::1", "fd00::1",
                   "64:ff9b::a9fe:a9fe", "2002:a00:1::1"):
        assert any(ipaddress.ip_address(target) in net for net in blocked), target
    for target in ("1.1.1.1", "2606:4700:4700::1111", "64:ff9b::101:101"):
        assert not any(ipaddress.ip_address(target) in net for net in blocked), target


# ------------------------------------------------------------------ through the API


@pytest.fixture(scope="module")
def k8s_catalog(live: LiveServer, http: httpx.Client) -> tuple[dict, dict]:
    """A k8s flavor and container image (the cluster is not needed: requests are refused)."""
    api = Api(live, http)
    admin = api.token("admin")
    catalog = {"friendly_name": f"k8s-{uuid.uuid4().hex[:6]}", "flavor_type": "k8s"}
    flavor = api.ok("POST", "/flavors", admin, 201, json=catalog | {"vcpus": 1, "ram_mib": 128})
    location = f"registry.invalid/busybox:{uuid.uuid4().hex[:6]}"
    image = api.ok("POST", "/disk-images", admin, 201, json=catalog | {"location": location})
    return flavor, image


@pytest.mark.parametrize(("volume", "needle"), FOREIGN_VOLUMES, ids=[n for _, n in FOREIGN_VOLUMES])
def test_the_api_refuses_a_pod_mounting_what_is_not_ours(
    live: LiveServer, http: httpx.Client, k8s_catalog: tuple[dict, dict], volume: dict, needle: str
) -> None:
    api = Api(live, http)
    flavor, image = k8s_catalog
    experiment = api.token("mallory", "demo", experiment=f"escape-{uuid.uuid4().hex[:6]}")
    body = {"request_id": str(uuid.uuid4()), "resources": [{
        "friendly_name": "escape", "flavor_id": flavor["id"], "disk_image_id": image["id"],
        "request_config": {"volumes": [volume]}}]}
    response = api.call("POST", "/resources", experiment, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert detail.startswith("resources.0.request_config: invalid request_config") and needle in detail
    assert api.ok("GET", "/resources", experiment) == []  # nothing recorded


# ------------------------------------------------------------------ the real control plane


@pytest.fixture
def driver(new_driver: Callable[..., KubernetesDriver]) -> KubernetesDriver:  # noqa: F811
    built = new_driver(ready_timeout=60.0, unschedulable_grace=2.0, delete_grace=0,
                       cpu_request_fraction=0.01)
    built.cluster_networks = [CLUSTER_NET]
    return built


@pytest.mark.kubernetes
@pytest.mark.parametrize("level", ["restricted", "baseline"])
async def test_the_cluster_stores_the_lockdown(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec],  # noqa: F811
    progress: Any, level: str,  # noqa: F811
) -> None:
    driver.pod_security = level
    s = make_spec("locked")
    info = await driver.create(s, progress)
    assert info.state == "running", info.reason
    namespace, name = info.provider_resource_id.split("/")

    labels = kube.read_namespace(namespace).metadata.labels
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == level
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"

    networking = k8s.NetworkingV1Api(driver.api_client)
    stored = networking.read_namespaced_network_policy(NETWORK_POLICY, namespace)
    wanted = network_policy_manifest(s, [CLUSTER_NET])["spec"]
    as_sent = driver.api_client.sanitize_for_serialization(stored.spec)
    assert as_sent == wanted

    pod = kube.read_namespaced_pod(name, namespace)
    (container,) = pod.spec.containers
    context = container.security_context
    assert context.allow_privilege_escalation is False and context.privileged is False
    assert context.capabilities.drop == ["ALL"] and not context.capabilities.add
    assert context.seccomp_profile.type == "RuntimeDefault"
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    non_root = True if level == "restricted" else None
    assert context.run_as_non_root is pod.spec.security_context.run_as_non_root is non_root
    uid = 65534 if level == "restricted" else None
    assert pod.spec.security_context.run_as_user == pod.spec.security_context.fs_group == uid
    assert not (pod.spec.host_network or pod.spec.host_pid or pod.spec.host_ipc)
    assert pod.spec.automount_service_account_token is False
    assert all(v.host_path is None for v in pod.spec.volumes or [])


@pytest.mark.kubernetes
async def test_mounting_a_foreign_secret_is_refused_and_no_pod_runs(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec],  # noqa: F811
    progress: Any,  # noqa: F811
) -> None:
    # the experiment has a pod of ours: its namespace and service-account token exist
    first = make_spec("first")
    await driver.create(first, progress)
    namespace = namespace_name(first.experiment_id)
    await asyncio.to_thread(_service_account_token, kube, namespace)  # waits for the token
    token_secret = kube.read_namespaced_service_account("default", namespace).secrets[0].name
    # a Secret named like ours but not made by us (an admin's, or another tool's)
    kube.create_namespaced_secret(namespace, {"metadata": {"name": "x-0123abcd-provision"},
                                              "stringData": {"password": "hunter2"}})
    attacks = [
        ({"name": "t", "mount_path": "/t", "secret": "x-0123abcd-provision"},
         "not a Secret slices-blueprint created for this experiment"),
        ({"name": "root", "mount_path": "/host", "host_path": {"path": "/"}},
         "host_path is not a volume source"),
        # v1.20 keeps the default service account's token in a Secret: the cluster API's key
        ({"name": "t", "mount_path": "/t", "secret": token_secret},
         "is not a Secret slices-blueprint creates"),
    ]
    for volume, needle in attacks:
        attack = make_spec("escape", experiment_id=first.experiment_id,
                           config={"volumes": [volume]})
        with pytest.raises(ProviderError, match=needle):
            await driver.create(attack, progress)
        assert pods_of(kube, attack) == []


@pytest.mark.kubernetes
async def test_a_secret_we_made_for_the_experiment_may_be_mounted(
    driver: KubernetesDriver, kube: k8s.CoreV1Api, make_spec: Callable[..., NodeSpec],  # noqa: F811
    progress: Any,  # noqa: F811
) -> None:
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3 alice@example.org"]
    first = make_spec("keys", ssh_authorized_keys=keys, config={"provision_mount": "/run/slices"})
    await driver.create(first, progress)
    ours = f"{pod_name(first)}-provision"
    second = make_spec("reader", experiment_id=first.experiment_id, config={
        "volumes": [{"name": "keys", "mount_path": "/keys", "secret": ours, "read_only": True}]})
    info = await driver.create(second, progress)
    assert info.state == "running", info.reason
    namespace, name = info.provider_resource_id.split("/")
    volumes = {v.name: v for v in kube.read_namespaced_pod(name, namespace).spec.volumes}
    assert volumes["keys"].secret.secret_name == ours
