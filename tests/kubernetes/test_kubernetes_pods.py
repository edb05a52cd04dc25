"""The Kubernetes provider's pure rules: names, labels, request_config, pod verdicts.

No cluster needed; the same rules are exercised against the real control plane in
``test_kubernetes_driver.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import NodeSpec, ProviderError
from slices_blueprint.providers.kubernetes.client import parse_kubeconfig, pick_context
from slices_blueprint.providers.kubernetes.driver import KubernetesDriver
from slices_blueprint.providers.kubernetes.pods import (
    label_value,
    namespace_name,
    parse_config,
    pod_manifest,
    pod_name,
    pod_verdict,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec(**fields: Any) -> NodeSpec:
    values: dict[str, Any] = {
        "resource_id": "res_be-gent1-bi-vm1_01kz8m6e2qf6t9s0v8x7w5y4z3",
        "name": "My Pod_1!",
        "experiment_id": "exp_expauth.ilabt.imec.be_01kz8m6e2qf6t9s0v8x7w5y4z3",
        "project_id": "proj_expauth.ilabt.imec.be_01kz8m6e2qf6t9s0v8x7w5y4z4",
        "image_location": "busybox:1.36",
        "image_default_username": None,
        "flavor_ref": None,
        "vcpus": 2,
        "ram_mib": 512,
        "disk_mb": 1024,
    }
    return NodeSpec(**(values | fields))


@pytest.mark.parametrize(
    "experiment_id",
    ["exp_expauth.ilabt.imec.be_01kz8m6e2qf6t9s0v8x7w5y4z3", "X" * 300, "___", "exp_a_b"],
)
def test_namespace_names_are_dns_labels_and_distinct(experiment_id: str) -> None:
    name = namespace_name(experiment_id)
    assert DNS_LABEL.match(name) and name.startswith("slices-")
    assert name != namespace_name(experiment_id + "x")


def test_pod_name_is_a_dns_label_unique_per_resource() -> None:
    first, second = spec(), spec(resource_id="res_be-gent1-bi-vm1_01kz8m6e2qf6t9s0v8x7w5y4z9")
    assert DNS_LABEL.match(pod_name(first)) and pod_name(first).startswith("my-pod-1-")
    assert pod_name(first) != pod_name(second)
    assert DNS_LABEL.match(pod_name(spec(name="!!!" * 40)))


@pytest.mark.parametrize(
    ("value", "kept"),
    [("res_be-gent1-bi-vm1_01kz8m6e2qf6t9s0v8x7w5y4z3", True), ("a/b c", False), ("x" * 80, False)],
)
def test_label_values_are_valid_and_exact_when_possible(value: str, kept: bool) -> None:
    assert LABEL_VALUE.match(label_value(value)) and len(label_value(value)) <= 63
    assert (label_value(value) == value) is kept


def test_manifest_carries_flavor_and_request_config() -> None:
    s = spec(config={"command": ["sleep"], "args": ["1d"], "env": {"A": "1"}, "ports": [80]})
    manifest = pod_manifest(s, parse_config(s), pod_name(s))
    container = manifest["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "512Mi"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    overcommitted = pod_manifest(s, parse_config(s), pod_name(s), cpu_request_fraction=0.25)
    resources = overcommitted["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert resources["limits"] == container["resources"]["limits"]
    assert container["command"] == ["sleep"] and container["args"] == ["1d"]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert manifest["metadata"]["annotations"]["slices.eu/resource-id"] == s.resource_id


@pytest.mark.parametrize(
    ("config", "fields", "needle"),
    [
        ({"colour": "blue"}, {}, "colour"),
        ({"ports": [70000]}, {}, "ports"),
        ({"volumes": [{"name": "v", "mount_path": "/v"}]}, {}, "exactly one of"),
        (
            {"volumes": [{"name": "v", "mount_path": "/v", "persistent_claim": {"size": "1Gi"}}]},
            {},
            "storage_class",
        ),
        ({}, {"ssh_authorized_keys": ["ssh-ed25519 AAAA"]}, "provision_mount"),
        ({}, {"userdata": "#cloud-config"}, "provision_mount"),
    ],
)
def test_bad_request_config_is_refused(config: dict, fields: dict, needle: str) -> None:
    with pytest.raises(ProviderError, match=needle):
        parse_config(spec(config=config, **fields))


def _pod(
    phase: str = "Pending", conditions: list | None = None, statuses: list | None = None
) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="p", namespace="n", creation_timestamp=NOW),
        spec=k8s.V1PodSpec(containers=[]),
        status=k8s.V1PodStatus(phase=phase, conditions=conditions, container_statuses=statuses),
    )


def _status(waiting: str | None = None, terminated: str | None = None) -> k8s.V1ContainerStatus:
    state = k8s.V1ContainerState(
        waiting=k8s.V1ContainerStateWaiting(reason=waiting, message="detail") if waiting else None,
        terminated=k8s.V1ContainerStateTerminated(reason=terminated, exit_code=137)
        if terminated
        else None,
    )
    return k8s.V1ContainerStatus(
        name="main", image="i", image_id="", ready=False, restart_count=3, state=state
    )


def test_unschedulable_is_provisioning_within_grace_then_error() -> None:
    since = NOW - timedelta(seconds=30)
    cond = k8s.V1PodCondition(
        type="PodScheduled",
        status="False",
        reason="Unschedulable",
        message="0/1 nodes are available: 1 Insufficient cpu.",
        last_transition_time=since,
    )
    early = pod_verdict(_pod(conditions=[cond]), unschedulable_grace=60, now=NOW)
    assert (early.state, early.reason, early.recheck_in) == ("provisioning", "Unschedulable", 30)
    late = pod_verdict(_pod(conditions=[cond]), unschedulable_grace=10, now=NOW)
    assert late.state == "error" and "Insufficient cpu" in late.text


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (_status(waiting="CrashLoopBackOff"), "CrashLoopBackOff"),
        (_status(waiting="ImagePullBackOff"), "ImagePullBackOff"),
        (_status(waiting="CreateContainerConfigError"), "CreateContainerConfigError"),
        (_status(terminated="OOMKilled"), "OOMKilled"),
    ],
)
def test_fatal_container_states_are_errors(status: k8s.V1ContainerStatus, reason: str) -> None:
    verdict = pod_verdict(_pod("Running", statuses=[status]), unschedulable_grace=60, now=NOW)
    assert (verdict.state, verdict.reason) == ("error", reason)


def test_running_needs_ready() -> None:
    ready = k8s.V1PodCondition(type="Ready", status="True")
    not_ready = k8s.V1PodCondition(type="Ready", status="False")
    assert pod_verdict(_pod("Running", [ready]), 60, NOW).state == "running"
    assert pod_verdict(_pod("Running", [not_ready]), 60, NOW).state == "provisioning"
    creating = pod_verdict(_pod("Pending", [], [_status(waiting="ContainerCreating")]), 60, NOW)
    assert (creating.state, creating.reason) == ("provisioning", "ContainerCreating")


def test_kubeconfig_errors_name_the_problem_without_echoing_secrets() -> None:
    with pytest.raises(ProviderError, match="not valid YAML") as err:
        parse_kubeconfig(b"users:\n- user: {token: s3cr3t-token\n  bad: [", uploaded=True)
    assert "s3cr3t" not in str(err.value)
    config = parse_kubeconfig(b"contexts: [{name: a}, {name: b}]", uploaded=True)
    with pytest.raises(ProviderError, match="it has: a, b"):
        pick_context(config, "c")
    with pytest.raises(ProviderError, match="choose a context"):
        pick_context(config, None)


def test_uploaded_kubeconfigs_may_not_reach_into_our_server() -> None:
    exec_user = b"""
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://example.org"}}]
users: [{name: u, user: {exec: {command: /bin/sh, args: [-c, id]}}}]
"""
    with pytest.raises(ProviderError, match="exec"):
        parse_kubeconfig(exec_user, uploaded=True)
    assert parse_kubeconfig(exec_user, uploaded=False)["users"][0]["name"] == "u"  # operator's


def test_no_cluster_configured_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kubernetes_kubeconfig=None)
    with pytest.raises(ProviderError, match="upload a kubeconfig"):
        KubernetesDriver.from_settings(settings, None, None)
