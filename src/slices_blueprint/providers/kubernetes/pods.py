"""Pure helpers of the Kubernetes provider: names, labels, manifests and the truth about pods.

Nothing here talks to a cluster, so every rule (how an id becomes a DNS-1123 name, which
``request_config`` is accepted, which pod status means ``error``) is testable on its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
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
NETWORK_POLICY = "slices-experiment-isolation"
PodSecurity = Literal["restricted", "baseline"]
PSA_LABEL = "pod-security.kubernetes.io"
PSA_MODES = ("enforce", "audit", "warn")
RESTRICTED_UID = 65534  # nobody
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

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


# Secrets we create: ``<pod>-provision`` (see provision_secret_name), pod = name + digest
OUR_SECRET = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9a-f]{8}-provision$")
VOLUME_SOURCES = ("empty_dir", "secret", "persistent_claim")


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
    """One volume mounted into the container; exactly one source. No host paths, ConfigMaps,
    service-account tokens or other projected sources: only scratch space, claims we create,
    and Secrets slices-blueprint created in the experiment's namespace."""

    name: str
    mount_path: str
    read_only: bool = False
    empty_dir: EmptyDirConfig | None = None
    secret: str | None = None  # a Secret we created in the namespace (a ``<pod>-provision``)
    persistent_claim: ClaimConfig | None = None  # a new claim, needs ``storage_class``

    @model_validator(mode="before")
    @classmethod
    def _known_sources(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"volume {data.get('name')!r}: {', '.join(unknown)} is not a volume source "
                    f"pods may use (sources: {', '.join(VOLUME_SOURCES)})"
                )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> VolumeConfig:
        sources = [self.empty_dir, self.secret, self.persistent_claim]
        if sum(s is not None for s in sources) != 1:
            raise ValueError(
                f"volume {self.name!r} needs exactly one of {', '.join(VOLUME_SOURCES)}"
            )
        if self.secret is not None and not OUR_SECRET.match(self.secret):
            raise ValueError(
                f"volume {self.name!r}: secret {self.secret!r} is not a Secret slices-blueprint "
                "creates; only the '<pod>-provision' Secrets of this experiment's pods may be "
                "mounted"
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


def check_config(config: dict[str, Any]) -> PodConfig:
    """``request_config`` checked on its own; bad input is the user's to fix: ProviderError."""
    try:
        return PodConfig.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'request_config'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ProviderError(f"invalid request_config for a k8s resource: {problems}") from None


def parse_config(spec: NodeSpec) -> PodConfig:
    """``spec.config`` checked, with the SSH keys and userdata it must have a place for."""
    config = check_config(spec.config)
    if (spec.ssh_authorized_keys or spec.userdata) and not config.provision_mount:
        raise ProviderError(
            "containers get SSH keys and userdata only when their image reads them: set "
            "request_config.provision_mount to the directory where the image expects "
            "'authorized_keys' and 'user-data' (or omit the keys and userdata)"
        )
    return config


# ---------------------------------------------------------------- manifests


def namespace_manifest(spec: NodeSpec, name: str, pod_security: PodSecurity) -> dict[str, Any]:
    """The experiment's namespace, labelled for Pod Security admission at ``pod_security``."""
    metadata = owner_metadata(spec, name, resource=False)
    metadata["labels"] |= pod_security_labels(pod_security)
    return {"metadata": metadata}


def pod_security_labels(pod_security: PodSecurity) -> dict[str, str]:
    """Enforce (and audit, warn) ``pod_security`` at the cluster's latest policy version."""
    labels = {f"{PSA_LABEL}/{mode}": pod_security for mode in PSA_MODES}
    return labels | {f"{PSA_LABEL}/{mode}-version": "latest" for mode in PSA_MODES}


# Not the internet (IANA special-purpose registries): never an experiment pod's egress target.
NOT_INTERNET_V4 = tuple(map(ipaddress.IPv4Network, (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)))
# (IPv4-mapped ::ffff:0:0/96 never appears on the wire, and the API server reads it as IPv4)
NOT_INTERNET_V6 = tuple(map(ipaddress.IPv6Network, (
    "::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def _carrying(net: ipaddress.IPv4Network) -> list[ipaddress.IPv6Network]:
    """The IPv6 ranges whose packets reach ``net``: its NAT64 and 6to4 forms."""
    v4, length = int(net.network_address), net.prefixlen
    return [
        ipaddress.IPv6Network((int(_NAT64.network_address) | v4, 96 + length)),
        ipaddress.IPv6Network((int(_SIX_TO_FOUR.network_address) | v4 << 80, 16 + length)),
    ]


def network_policy_manifest(
    spec: NodeSpec, cluster_networks: Iterable[Network] = ()
) -> dict[str, Any]:
    """Default deny for the experiment's namespace, then: ingress from its own pods; egress to
    its own pods, to kube-dns (port 53) and to the internet, which is everything except
    :data:`NOT_INTERNET_V4`/``_V6`` (with their NAT64 and 6to4 forms) and ``cluster_networks``
    (the cluster's pod and service ranges when they are not private)."""
    blocked_v4 = [*NOT_INTERNET_V4, *(n for n in cluster_networks if n.version == 4)]
    blocked_v6 = [
        *NOT_INTERNET_V6,
        *(n for n in cluster_networks if n.version == 6),
        *(carrier for net in blocked_v4 for carrier in _carrying(net)),
    ]
    internet = [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": [str(n) for n in blocked_v4]}},
        {"ipBlock": {"cidr": "::/0", "except": [str(n) for n in blocked_v6]}},
    ]
    dns = {
        "to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    own_pods = [{"podSelector": {}}]
    return {
        "metadata": owner_metadata(spec, NETWORK_POLICY, resource=False),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": own_pods}],
            "egress": [{"to": own_pods}, dns, {"to": internet}],
        },
    }


def security_contexts(pod_security: PodSecurity) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's securityContext at ``pod_security``: no privilege
    escalation, no capabilities, the runtime's seccomp profile. Restricted pods run as
    ``nobody`` (:data:`RESTRICTED_UID`, also their volumes' group): the kubelet refuses
    ``runAsNonRoot`` for images whose user is root or a name it cannot check."""
    seccomp = {"seccompProfile": {"type": "RuntimeDefault"}}
    non_root = {"runAsNonRoot": True} if pod_security == "restricted" else {}
    user = (
        {"runAsUser": RESTRICTED_UID, "runAsGroup": RESTRICTED_UID, "fsGroup": RESTRICTED_UID}
        if pod_security == "restricted"
        else {}
    )
    container = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return seccomp | non_root | user, container | seccomp | non_root


def provision_secret_name(pod: str) -> str:
    return f"{pod}-provision"


def files_secret_name(pod: str) -> str:
    return f"{pod}-files"


def files_secret(spec: NodeSpec, pod: str) -> dict[str, Any]:
    """The Secret carrying the files to place in the pod (``spec.files``), one key each."""
    data = {f"file-{i}": f.content for i, f in enumerate(spec.files)}
    return {"metadata": owner_metadata(spec, files_secret_name(pod)), "stringData": data}


def services_policy_name(pod: str) -> str:
    return f"{pod}-services"


def services_policy_manifest(spec: NodeSpec, pod: str) -> dict[str, Any] | None:
    """A NetworkPolicy letting this pod alone reach its guest services' targets (a QKD KME,
    say) on their ports, which the experiment policy's internet-only egress refuses when they
    are on private addresses. Policies add up, so nothing else is opened. Targets given as
    host names cannot be named in a NetworkPolicy: they are left out (see
    :func:`unnamed_service_targets`). None when there is nothing to allow."""
    rules = [{"to": [{"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}],
              "ports": [{"protocol": "TCP", "port": s.target_port}]}
             for s in spec.guest_services if (ip := _ip(s.target_host)) is not None]
    if not rules:
        return None
    return {
        "metadata": owner_metadata(spec, services_policy_name(pod)),
        "spec": {"podSelector": {"matchLabels": {RESOURCE_LABEL: label_value(spec.resource_id)}},
                 "policyTypes": ["Egress"], "egress": rules},
    }


def unnamed_service_targets(spec: NodeSpec) -> list[str]:
    """The guest services' targets that are host names (no NetworkPolicy can allow them)."""
    return [f"{s.target_host}:{s.target_port}" for s in spec.guest_services if _ip(s.target_host) is None]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def files_volumes(spec: NodeSpec, pod: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and read-only mounts placing ``spec.files``: one per directory, each a
    projection of :func:`files_secret` with the files' modes (the kubelet lets the pod's
    ``fsGroup`` read them)."""
    folders: dict[str, list[dict[str, Any]]] = {}
    for i, f in enumerate(spec.files):
        folder, _, name = f.path.rpartition("/")
        folders.setdefault(folder or "/", []).append({"key": f"file-{i}", "path": name, "mode": f.mode})
    volumes = [{"name": f"slices-files-{n}", "secret": {"secretName": files_secret_name(pod), "items": items}}
               for n, items in enumerate(folders.values())]
    mounts = [{"name": f"slices-files-{n}", "mountPath": folder, "readOnly": True}
              for n, folder in enumerate(folders)]
    return volumes, mounts


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
    pod_security: PodSecurity = "restricted",
) -> dict[str, Any]:
    """The pod for a resource: one container sized by the flavor, locked down.

    Limits are the flavor's vCPUs and RAM; the memory request equals its limit, the CPU
    request is ``cpu_request_fraction`` of it (1.0: Guaranteed QoS; less overcommits CPU).
    ``termination_grace`` applies however the pod is deleted (also with its namespace).
    The securityContexts follow ``pod_security`` (:func:`security_contexts`); no host
    namespace, no service-account token.
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
    placed, placed_mounts = files_volumes(spec, name)
    volumes += placed
    mounts += placed_mounts
    memory = f"{spec.ram_mib}Mi"
    requested = max(1, round(spec.vcpus * 1000 * cpu_request_fraction))
    limits = {"cpu": _cpu(spec.vcpus * 1000), "memory": memory}
    pod_context, container_context = security_contexts(pod_security)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image_location,
        "resources": {"requests": {"cpu": _cpu(requested), "memory": memory}, "limits": limits},
        "env": env,
        "ports": [_port(p) for p in config.ports],
        "volumeMounts": mounts,
        "securityContext": container_context,
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
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "securityContext": pod_context,
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
