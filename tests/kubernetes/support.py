"""Watch-based waits the Kubernetes tests share."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes import client as k8s
from kubernetes import watch


def wait_namespace_gone(kube: k8s.CoreV1Api, name: str, timeout: int = 90) -> bool:
    """Watch the namespace until it is deleted; False if still there after ``timeout``."""
    try:
        ns = kube.read_namespace(name)
    except k8s.ApiException as exc:
        return exc.status == 404
    stream = watch.Watch().stream(
        kube.list_namespace,
        field_selector=f"metadata.name={name}",
        resource_version=ns.metadata.resource_version,
        timeout_seconds=timeout,
    )
    return any(event["type"] == "DELETED" for event in stream)


def wait_pod(
    kube: k8s.CoreV1Api, namespace: str, name: str, ready: Callable[[k8s.V1Pod], bool]
) -> k8s.V1Pod:
    """Watch the pod until ``ready(pod)`` holds (30 s at most)."""
    stream = watch.Watch().stream(
        kube.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        timeout_seconds=30,
    )
    for event in stream:
        if event["type"] != "DELETED" and ready(event["object"]):
            stream.close()
            return event["object"]
    raise AssertionError(f"pod {namespace}/{name} never reached the expected state")
