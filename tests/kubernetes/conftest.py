"""Fixtures for the Kubernetes provider's tests against the real control plane.

The cluster is ``../shared/tools/k8s-apiserver.sh``: etcd, kube-apiserver, controller-manager,
scheduler and a hollow kubelet (fake runtime: pods go Running without containers). When it
does not answer, integration tests skip, or fail when ``SLICES_BLUEPRINT_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from slices_blueprint.core.config import Settings
from slices_blueprint.core.ids import format_id, new_uuid
from slices_blueprint.providers.base import NodeSpec
from slices_blueprint.providers.kubernetes.driver import KubernetesDriver
from slices_blueprint.providers.kubernetes.pods import namespace_name
from tests.kubernetes.cluster_fixture import KUBECONFIG

RUN = uuid.uuid4().hex[:6]  # tells this run's objects from any other's


@pytest.fixture
async def new_driver(kubeconfig_bytes: bytes) -> AsyncIterator[Callable[..., KubernetesDriver]]:
    """Drivers on the operator's kubeconfig (the ``from_settings`` path) with test timings."""
    drivers: list[KubernetesDriver] = []

    def build(**timing: Any) -> KubernetesDriver:
        settings = Settings(kubernetes_kubeconfig=KUBECONFIG)
        driver = KubernetesDriver.from_settings(settings, None, None)
        for name, value in timing.items():
            setattr(driver, name, value)
        drivers.append(driver)
        return driver

    yield build
    for driver in drivers:
        await driver.close()


@pytest.fixture
def driver(new_driver: Callable[..., KubernetesDriver]) -> KubernetesDriver:
    # the hollow node offers 1 CPU: requests of 10m per vCPU let tests run side by side
    return new_driver(
        ready_timeout=60.0, unschedulable_grace=2.0, delete_grace=0, cpu_request_fraction=0.01
    )


@pytest.fixture
def make_spec(kube: k8s.CoreV1Api) -> Iterator[Callable[..., NodeSpec]]:
    """Build NodeSpecs in fresh experiments; their namespaces are deleted after the test."""
    experiments: list[str] = []

    def build(name: str = "node", experiment_id: str | None = None, **fields: Any) -> NodeSpec:
        experiment = experiment_id or format_id("exp", f"test-{RUN}", new_uuid())
        experiments.append(experiment)
        values: dict[str, Any] = {
            "resource_id": format_id("res", f"test-{RUN}", new_uuid()),
            "name": name,
            "experiment_id": experiment,
            "project_id": format_id("proj", f"test-{RUN}", new_uuid()),
            "image_location": "busybox:1.36",
            "image_default_username": None,
            "flavor_ref": None,
            "vcpus": 1,
            "ram_mib": 256,
            "disk_mb": 1024,
        }
        return NodeSpec(**(values | fields))

    yield build
    for experiment in set(experiments):
        try:
            kube.delete_namespace(namespace_name(experiment), grace_period_seconds=0)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise


class Progress:
    """Records ``progress(percent, message)`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, percent: int, message: str) -> None:
        self.calls.append((percent, message))


@pytest.fixture
def progress() -> Progress:
    return Progress()
