"""The AIO Kubernetes cluster (``kubeconfig_bytes``, ``kube``), registered once for the whole
suite (a pytest plugin of ``tests/conftest.py``): the Kubernetes tests and the fault tests
share them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

KUBECONFIG = Path(os.environ.get("K8S_AIO_KUBECONFIG", "/var/lib/k8s-aio/kubeconfig"))


def _unavailable(why: str) -> None:
    message = f"Kubernetes AIO not running: start ../shared/tools/k8s-apiserver.sh ({why})"
    if os.environ.get("SLICES_BLUEPRINT_REQUIRE_INTEGRATION") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kubeconfig_bytes() -> bytes:
    """The AIO cluster's admin kubeconfig, once the API server has answered."""
    try:
        data = KUBECONFIG.read_bytes()
        api = k8s_config.new_client_from_config(config_file=str(KUBECONFIG))
        with api:
            k8s.VersionApi(api).get_code(_request_timeout=(3, 5))
    except (OSError, HTTPError, k8s.ApiException, ConfigException) as exc:
        _unavailable(f"{type(exc).__name__}: {exc}")
    return data


@pytest.fixture(scope="session")
def kube(kubeconfig_bytes: bytes) -> Iterator[k8s.CoreV1Api]:
    """A plain client, independent of the driver, for checking and driving the cluster."""
    api = k8s_config.new_client_from_config(config_file=str(KUBECONFIG))
    with api:
        yield k8s.CoreV1Api(api)
