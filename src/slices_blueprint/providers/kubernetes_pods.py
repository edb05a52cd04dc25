"""Pure helpers of the Kubernetes provider: names, labels, manifests and the truth about pods.

Nothing here talks to a cluster, so every rule (how an id becomes a DNS-1123 name, which
``request_config`` is accepted, which pod status means ``error``) is testable on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from kubernetes.client import V1Pod
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slices_blueprint.providers.base import NodeSpec, NodeState, ProviderError

MANAGED_BY = ("app.kubernetes.io/managed-by", "slices-blueprint")
RESOURCE_LABEL = "slices.eu/resource-id"
EXPERIMENT_LABEL = "slices.eu/experiment-id"
PROJECT_LABEL = "slices.eu/project-id"
MANAGED_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]}"
CONTAINER = "main"

# Container states the kubelet keeps retrying but that will not fix themselves.
FATAL_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
FATAL_TERMINATED = frozenset({"OOMKilled"})

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def _dns_chars(value: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", value.lower())).strip("-")


def label_value(value: str) -> str:
    """``value`` as a valid label value: unchanged when it is one, else cleaned + a digest."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    return f"{cleaned}-{_digest(value)}" if cleaned else _digest(value)


def namespace_name(experiment_id: str) -> str:
    """The experiment's namespace: ``slices-<tail of the id>-<digest>`` (DNS-1123, <= 63)."""
    tail = _dns_chars(experiment_id)[-45:].strip("-")
    return f"slices-{tail}-{_digest(experiment_id)}" if tail else f"slices-{_digest(experiment_id)}"


def pod_name(spec: NodeSpec) -> str:
    """The pod of a resource: its friendly name made DNS-1123 plus a digest of its id."""
    head = _dns_chars(spec.name)[:50].strip("-") or "node"
    return f"{head}-{_digest(spec.resource_id)}"


def resource_selector(resource_id: str) -> str:
    return f"{MANAGED_SELECTOR},{RESOURCE_LABEL}={label_value(resource_id)}"


def owner_metadata(spec: NodeSpec, name: str, *, resource: bool = True) -> dict[str, Any]:
    """Labels (sanitised, selectable) and annotations (exact ids) for an object of ours."""
    ids = {EXPERIMENT_LABEL: spec.experiment_id, PROJECT_LABEL: spec.project_id}
    if resource:
        ids[RESOURCE_LABEL] = spec.resource_id
    labels = {MANAGED_BY[0]: MANAGED_BY[1]} | {k: label_value(v) for k, v in ids.items()}
    return {"name": name, "labels": labels, "annotations": ids}


# ---------------------------------------------------------------- request_config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortConfig(_Strict):
    port: int = Field(ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    name: str | None = None


class EmptyDirConfig(_Strict):
    medium: Literal["", "Memory"] = ""
    size_limit: str | None = None


class ClaimConfig(_Strict):
    size: str
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"] = "ReadWriteOnce"


class VolumeConfig(_Strict):
    """One volume mounted into the container; exactly one source."""

    name: str
    mount_path: str
    read_only: bool = False
    empty_dir: EmptyDirConfig | None = None
    config_map: str | None = None  # name of an existing ConfigMap in the namespace
    secret: str | None = None  # name of an existing Secret in the namespace
    persistent_claim: ClaimConfig | None = None  # a new claim, needs ``storage_class``

    @model_validator(mode="after")
    def _one_source(self) -> VolumeConfig:
        sources = [self.empty_dir, self.config_map, self.secret, self.persistent_claim]
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                f"volume {self.name!r} needs exactly one of empty_dir, config_map, secret, "
                "persistent_claim"
            )
        return self


class PodConfig(_Strict):
    """The ``request_config`` a ``k8s`` resource accepts (see the provider's docstring)."""

    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = {}
    ports: list[Annotated[int, Field(ge=1, le=65535)] | PortConfig] = []
    volumes: list[VolumeConfig] = []
    node_selector: dict[str, str] = {}
    storage_class: str | None = None
    provision_mount: str | None = None  # where the image reads authorized_keys / user-data

    @model_validator(mode="after")
    def _claims_need_class(self) -> PodConfig:
        if any(v.persistent_claim for v in self.volumes) and not self.storage_class:
            raise ValueError("persistent_claim volumes need request_config.storage_class")
        return self


def parse_config(spec: NodeSpec) -> PodConfig:
    """``spec.config`` checked; bad input is the user's to fix, so a ProviderError."""
    try:
        config = PodConfig.model_validate(spec.config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'request_config'}: {e['msg']}" for e in exc.errors()
        )
        raise ProviderError(f"invalid request_config for a k8s resource: {problems}") from None
    if (spec.ssh_authorized_keys or spec.userdata) and not config.provision_mount:
        raise ProviderError(
            "containers get SSH keys and userdata only when their image reads them: set "
            "request_config.provision_mount to the directory where the image expects "
            "'authorized_keys' and 'user-data' (or omit the keys and userdata)"
        )
    return config


# ---------------------------------------------------------------- manifests


def provision_secret_name(pod: str) -> str:
    return f"{pod}-provision"


def claim_name(pod: str, volume: str) -> str:
    return f"{pod}-{_dns_chars(volume)}"[:63].strip("-")


def provision_secret(spec: NodeSpec, pod: str) -> dict[str, Any]:
    """The Secret carrying SSH keys and userdata to images that read them."""
    data = {"authorized_keys": "".join(f"{key.strip()}\n" for key in spec.ssh_authorized_keys)}
    if spec.userdata:
        data["user-data"] = spec.userdata
    return {"metadata": owner_metadata(spec, provision_secret_name(pod)), "stringData": data}


def claim_manifests(spec: NodeSpec, config: PodConfig, pod: str) -> list[dict[str, Any]]:
    """The PersistentVolumeClaims the pod's ``persistent_claim`` volumes need."""
    return [
        {
            "metadata": owner_metadata(spec, claim_name(pod, v.name)),
            "spec": {
                "storageClassName": config.storage_class,
                "accessModes": [v.persistent_claim.access_mode],
                "resources": {"requests": {"storage": v.persistent_claim.size}},
            },
        }
        for v in config.volumes
        if v.persistent_claim
    ]


def _volume_source(volume: VolumeConfig, pod: str) -> dict[str, Any]:
    if volume.empty_dir:
        return {"emptyDir": _empty_dir(volume.empty_dir)}
    if volume.config_map:
        return {"configMap": {"name": volume.config_map}}
    if volume.secret:
        return {"secret": {"secretName": volume.secret}}
    return {"persistentVolumeClaim": {"claimName": claim_name(pod, volume.name)}}


def _empty_dir(empty_dir: EmptyDirConfig) -> dict[str, Any]:
    source: dict[str, Any] = {"medium": empty_dir.medium}
    if empty_dir.size_limit:
        source["sizeLimit"] = empty_dir.size_limit
    return source


def _port(port: int | PortConfig) -> dict[str, Any]:
    p = port if isinstance(port, PortConfig) else PortConfig(port=port)
    return {"containerPort": p.port, "protocol": p.protocol} | ({"name": p.name} if p.name else {})


def _cpu(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def pod_manifest(
    spec: NodeSpec,
    config: PodConfig,
    name: str,
    cpu_request_fraction: float = 1.0,
    termination_grace: int = 30,
) -> dict[str, Any]:
    """The pod for a resource: one container sized by the flavor.

    Limits are the flavor's vCPUs and RAM; the memory request equals its limit, the CPU
    request is ``cpu_request_fraction`` of it (1.0: Guaranteed QoS; less overcommits CPU).
    ``termination_grace`` applies however the pod is deleted (also with its namespace).
    """
    volumes = [{"name": v.name} | _volume_source(v, name) for v in config.volumes]
    mounts = [
        {"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in config.volumes
    ]
    env = [{"name": k, "value": v} for k, v in config.env.items()]
    if config.provision_mount:
        volumes.append(
            {"name": "slices-provision", "secret": {"secretName": provision_secret_name(name)}}
        )
        mounts.append(
            {"name": "slices-provision", "mountPath": config.provision_mount, "readOnly": True}
        )
        env.append({"name": "SLICES_PROVISION_DIR", "value": config.provision_mount})
    memory = f"{spec.ram_mib}Mi"
    requested = max(1, round(spec.vcpus * 1000 * cpu_request_fraction))
    limits = {"cpu": _cpu(spec.vcpus * 1000), "memory": memory}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image_location,
        "resources": {"requests": {"cpu": _cpu(requested), "memory": memory}, "limits": limits},
        "env": env,
        "ports": [_port(p) for p in config.ports],
        "volumeMounts": mounts,
    }
    if config.command is not None:
        container["command"] = config.command
    if config.args is not None:
        container["args"] = config.args
    return {
        "metadata": owner_metadata(spec, name),
        "spec": {
            "containers": [container],
            "volumes": volumes,
            "nodeSelector": config.node_selector or None,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": termination_grace,
            "automountServiceAccountToken": False,  # experimenters get no cluster API token
            "enableServiceLinks": False,
            "hostname": name,
        },
    }


# ---------------------------------------------------------------- the truth about pods


@dataclass(frozen=True)
class PodVerdict:
    """What a pod's status means for the resource."""

    state: NodeState
    reason: str | None = None
    message: str | None = None
    recheck_in: float | None = None  # seconds until this verdict may change without an event

    @property
    def text(self) -> str | None:
        """``reason: message`` as shown to the user."""
        if self.reason and self.message:
            return f"{self.reason}: {self.message}"
        return self.reason or self.message


def _container_verdict(pod: V1Pod) -> PodVerdict | None:
    statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
    for status in statuses:
        state = status.state
        if state and state.waiting and state.waiting.reason in FATAL_WAITING:
            message = state.waiting.message or ""
            last = status.last_state.terminated if status.last_state else None
            if last and last.reason:
                message = f"{message} (last exit: {last.reason}, code {last.exit_code})".strip()
            return PodVerdict("error", state.waiting.reason, message or None)
        if state and state.terminated and state.terminated.reason in FATAL_TERMINATED:
            terminated = state.terminated
            detail = (
                terminated.message
                or f"container {status.name} exited with code {terminated.exit_code}"
            )
            return PodVerdict("error", terminated.reason, detail)
    return None


def _condition(pod: V1Pod, kind: str) -> Any:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def pod_verdict(pod: V1Pod, unschedulable_grace: float, now: datetime | None = None) -> PodVerdict:
    """Map a pod to (state, reason, message); unschedulable counts as error after the grace."""
    status = pod.status
    if pod.metadata.deletion_timestamp:
        return PodVerdict("stopped", "Terminating", "the pod is being deleted")
    if status.phase == "Failed":
        return _container_verdict(pod) or PodVerdict(
            "error", status.reason or "Failed", status.message
        )
    if status.phase == "Succeeded":
        return PodVerdict("stopped", "Completed", "the container exited successfully")
    fatal = _container_verdict(pod)
    if fatal:
        return fatal
    ready = _condition(pod, "Ready")
    if status.phase == "Running" and ready and ready.status == "True":
        return PodVerdict("running")
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.status == "False" and scheduled.reason == "Unschedulable":
        since = scheduled.last_transition_time or pod.metadata.creation_timestamp
        waited = ((now or datetime.now(UTC)) - since).total_seconds()
        if waited >= unschedulable_grace:
            return PodVerdict("error", "Unschedulable", scheduled.message)
        return PodVerdict(
            "provisioning", "Unschedulable", scheduled.message, unschedulable_grace - waited
        )
    waiting = next(
        (s.state.waiting for s in status.container_statuses or [] if s.state and s.state.waiting),
        None,
    )
    if waiting:
        return PodVerdict("provisioning", waiting.reason, waiting.message)
    return PodVerdict("provisioning", status.phase or "Pending", status.message)
