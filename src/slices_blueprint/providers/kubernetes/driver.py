"""KUBERNETES provider (flavor type ``k8s``): one pod per resource, one namespace per experiment.

Cluster and credential
    An experimenter's uploaded kubeconfig (credential kind ``kubernetes``, one context chosen
    at upload) or, without one, the operator's ``kubernetes_kubeconfig``/``kubernetes_context``.
    Uploaded kubeconfigs must carry everything inline (``*-data`` fields, tokens): file paths,
    ``exec`` and ``auth-provider`` plugins are refused, because they would make *our* server
    read its own files or run commands on a user's behalf; ``proxy-url`` is refused too, and
    the client of an uploaded kubeconfig takes no proxy from the environment either (a proxy
    would get the user's token and reach what the endpoint guard never saw). The official
    client writes inline certificates to temporary files; we load them into an in-memory TLS
    context and remove the files (kept in /dev/shm while they exist) before the driver is
    used. Every driver has its own ``ApiClient``; the client's global default configuration
    is never touched.

Objects
    Namespace ``slices-<experiment id>-<digest>`` (created on demand, labelled
    ``app.kubernetes.io/managed-by=slices-blueprint`` plus ``slices.eu/{project,experiment}-id``;
    deleted when the last pod of ours in it is gone). Pod ``<friendly name>-<digest of the
    resource id>`` labelled with the (sanitised) ids, annotated with the exact ids; one container
    ``main`` running the disk image's ``location``, CPU/memory limits from the flavor, memory
    request = limit, CPU request = ``cpu_request_fraction`` x limit (1.0, Guaranteed QoS, unless
    the operator overcommits; ``disk_mb`` is not enforced), no service-account token mounted.
    ``provider_resource_id`` is ``namespace/pod``; ``access.ipv4`` is the pod IP (reachable
    from inside the cluster only).

Files
    ``spec.files`` (e.g. a bound QKD SAE's credentials) travel in the Secret ``<pod>-files``,
    deleted with the pod, mounted read-only one volume per directory with each file's mode.
    Guest services are not forwarded: a pod reaches them at their own address, where the
    NetworkPolicy below lets it (public addresses).

Lockdown
    The namespace carries the Pod Security labels (enforce/audit/warn) of
    ``kubernetes_pod_security`` (``restricted``, or ``baseline`` for images that must start as
    root), and the NetworkPolicy ``slices-experiment-isolation``: default deny; ingress from
    the experiment's own pods; egress to them, to kube-dns on port 53 and to the internet only
    (private, loopback, link-local and other special ranges, their NAT64/6to4 forms and
    ``kubernetes_cluster_networks`` excluded). Both are brought up to date on every create.
    Every container runs with ``allowPrivilegeEscalation: false``, all capabilities dropped
    and the RuntimeDefault seccomp profile (restricted: ``runAsNonRoot``, as uid 65534); no host
    network/PID/IPC. Enforcement needs Pod Security admission (Kubernetes >= 1.23) and a CNI
    that implements NetworkPolicy; the objects are created either way.

``request_config`` (unknown keys are refused)
    ``command``/``args`` (lists), ``env`` (name -> value), ``ports`` (numbers or
    ``{port, protocol, name}``), ``volumes`` (``{name, mount_path, read_only}`` plus one of
    ``empty_dir: {medium, size_limit}``, ``secret: <name>`` (only a ``<pod>-provision`` Secret
    we created for this experiment: checked at request time by name, at create time by its
    labels), ``persistent_claim: {size, access_mode}``; claims need ``storage_class``; host
    paths, ConfigMaps, service-account tokens and other sources are refused),
    ``node_selector`` (label -> value), ``provision_mount`` (see below). The API checks it when
    the resource is requested (:meth:`KubernetesDriver.check_request_config`, a 422).

SSH keys and userdata
    Containers run no sshd or cloud-init of ours, so we never pretend to apply them. When
    the image reads them, ``request_config.provision_mount`` names a directory: we create a
    Secret ``<pod>-provision`` with ``authorized_keys`` and ``user-data``, mount it there
    read-only and set ``SLICES_PROVISION_DIR``. Without it, a request carrying SSH keys or
    userdata is refused with a ProviderError saying so.

Truth and failures
    ``kubernetes_pods.pod_verdict``: Running+Ready is ``running``; ImagePullBackOff,
    ErrImagePull, CrashLoopBackOff, CreateContainerConfigError (and kin) and OOMKilled are
    ``error`` with the kubelet's reason and message; an unschedulable pod stays
    ``provisioning`` for ``unschedulable_grace`` seconds, then is ``error`` with the
    scheduler's message. Waits use watches on the pod (never tight polling; one watch request
    lasts at most ``WATCH_SLICE`` s, in the driver's own thread pool). When ``create`` fails,
    the pod is left in place so its events can be inspected; the resource is in error and
    ``delete`` removes the pod (and its Secret/claims) as for any other resource. ``reset``
    deletes the pod and creates it again (emptyDir and claims start empty).

Races
    A create in a namespace whose last pod is being deleted meets a terminating namespace:
    that is a TransientProviderError (retried by the task layer). A fresh namespace may lack
    its default service account for a moment (Kubernetes 1.20); pod creation is retried
    (tenacity) on that refusal. An existing pod carrying the resource's id is adopted.

Catalog
    Kubernetes has no image catalog and no flavors: ``catalog()`` is empty; admins register
    container images and ``k8s`` flavors through the BI API.

Logs
    ``logs`` reads the container log through the API server; clusters whose kubelet keeps no
    logs (such as the fake-runtime test node) answer NotSupported with the cluster's message.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from kubernetes import watch
from kubernetes.client import (
    ApiClient,
    AuthorizationV1Api,
    CoreV1Api,
    NetworkingV1Api,
    V1Pod,
    VersionApi,
)
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential
from urllib3.exceptions import HTTPError

from slices_blueprint.core.config import Settings
from slices_blueprint.providers.base import (
    Catalog,
    ComputeDriver,
    ManagedNode,
    NodeInfo,
    NodeSpec,
    NotSupported,
    Progress,
    ProviderError,
    SessionSource,
    TransientProviderError,
)
from slices_blueprint.providers.endpoints import EndpointPolicy
from slices_blueprint.providers.kubernetes.client import (
    REQUEST_TIMEOUT,
    VALIDATE_TIMEOUT,
    NamespaceNotReady,
    api_message,
    build_api_client,
    parse_kubeconfig,
    pick_context,
    provider_error,
)
from slices_blueprint.providers.kubernetes.pods import (
    CONTAINER,
    EXPERIMENT_LABEL,
    MANAGED_BY,
    MANAGED_SELECTOR,
    RESOURCE_LABEL,
    Network,
    PodConfig,
    PodSecurity,
    PodVerdict,
    check_config,
    claim_manifests,
    files_secret,
    namespace_manifest,
    namespace_name,
    network_policy_manifest,
    parse_config,
    pod_manifest,
    pod_name,
    pod_verdict,
    provision_secret,
    resource_selector,
    services_policy_manifest,
    unnamed_service_targets,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

WATCH_SLICE = 30.0  # longest single watch request (seconds); the pod is re-read after it
REQUIRED_RESOURCES = (("", "namespaces"), ("", "pods"), ("networking.k8s.io", "networkpolicies"))


# ---------------------------------------------------------------- the driver


def split_resource_id(provider_resource_id: str) -> tuple[str, str]:
    namespace, _, name = provider_resource_id.partition("/")
    if not namespace or not name:
        raise ProviderError(f"{provider_resource_id!r} is not a namespace/pod reference")
    return namespace, name


class KubernetesDriver(ComputeDriver):
    """Pods on one cluster; see the module docstring."""

    flavor_type = "k8s"
    credential_kind = "kubernetes"
    credential_label = "Kubernetes kubeconfig"
    credential_entry = "Context"
    site_noun = "cluster"
    site_setting = "kubernetes_kubeconfig"
    takes_account_ssh_keys = False  # keys only where request_config asks for them

    def __init__(
        self,
        api_client: ApiClient,
        *,
        ready_timeout: float = 300.0,
        unschedulable_grace: float = 60.0,
        delete_grace: int = 30,
        cpu_request_fraction: float = 1.0,
        pod_security: PodSecurity = "restricted",
        cluster_networks: list[Network] | None = None,
    ) -> None:
        self.api_client = api_client
        self.core = CoreV1Api(api_client)
        self.networking = NetworkingV1Api(api_client)
        self.pod_security: PodSecurity = pod_security
        self.cluster_networks = cluster_networks or []
        self.host = api_client.configuration.host
        self.ready_timeout = ready_timeout
        self.unschedulable_grace = unschedulable_grace
        self.delete_grace = delete_grace
        self.cpu_request_fraction = cpu_request_fraction
        self._watchers = ThreadPoolExecutor(max_workers=64, thread_name_prefix="k8s-watch")

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: bytes | None, selected: str | None,
        *, db: SessionSource | None = None,
    ) -> KubernetesDriver:
        if credential is not None:
            config = parse_kubeconfig(credential, uploaded=True)
            client = build_api_client(config, pick_context(config, selected),
                                      policy=EndpointPolicy.of(settings))
        elif settings.kubernetes_kubeconfig:
            path = settings.kubernetes_kubeconfig
            config = parse_kubeconfig(path.read_bytes(), uploaded=False)
            context = pick_context(config, selected or settings.kubernetes_context)
            client = build_api_client(config, context, str(path.parent))
        else:
            raise ProviderError(
                "no Kubernetes cluster: upload a kubeconfig, or the operator sets kubernetes_kubeconfig"
            )
        return cls(
            client,
            ready_timeout=settings.kubernetes_ready_timeout_seconds,
            unschedulable_grace=settings.kubernetes_unschedulable_grace_seconds,
            delete_grace=settings.kubernetes_delete_grace_seconds,
            cpu_request_fraction=settings.kubernetes_cpu_request_fraction,
            pod_security=settings.kubernetes_pod_security,
            cluster_networks=settings.kubernetes_cluster_networks,
        )

    @classmethod
    def check_request_config(cls, config: dict[str, Any]) -> None:
        check_config(config)

    @classmethod
    async def validate_credential(
        cls, plaintext: bytes, selected: str | None, policy: EndpointPolicy
    ) -> str | None:
        """Parse, reach the server, authenticate, and check we may create namespaces and pods."""
        config = parse_kubeconfig(plaintext, uploaded=True)
        context = pick_context(config, selected)
        client = await asyncio.to_thread(build_api_client, config, context, policy=policy)
        driver = cls(client)
        try:
            version = await driver._call(
                VersionApi(client).get_code, _request_timeout=VALIDATE_TIMEOUT
            )
            await driver._require_permissions()
        except TransientProviderError as exc:  # unreachable is final for an upload
            raise ProviderError(str(exc)) from None
        finally:
            await driver.close()
        log.info("kubernetes.credential_valid", context=context, server_version=version.git_version)
        return context

    async def _require_permissions(self) -> None:
        auth = AuthorizationV1Api(self.api_client)
        missing = []
        for group, resource in REQUIRED_RESOURCES:
            attributes = {"verb": "create", "resource": resource, "group": group}
            review = {"spec": {"resourceAttributes": attributes}}
            answer = await self._call(
                auth.create_self_subject_access_review, review, _request_timeout=VALIDATE_TIMEOUT
            )
            if not answer.status.allowed:
                missing.append(f"create {resource}")
        if missing:
            raise ProviderError(
                f"these credentials may not {' and '.join(missing)} on {self.host}; "
                "one namespace per experiment, with a NetworkPolicy, is created"
            )

    async def _call(
        self,
        fn: Callable[..., T],
        *args: Any,
        allow: tuple[int, ...] = (),
        executor: ThreadPoolExecutor | None = None,
        **kwargs: Any,
    ) -> T | None:
        """Run a blocking client call in a thread; statuses in ``allow`` answer None."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))
        except ApiException as exc:
            if exc.status in allow:
                return None
            raise provider_error(exc, self.host) from None
        except (HTTPError, OSError) as exc:
            raise provider_error(exc, self.host) from None

    # ------------------------------------------------------------ create

    async def create(self, spec: NodeSpec, progress: Progress) -> NodeInfo:
        config = parse_config(spec)
        namespace = namespace_name(spec.experiment_id)
        pod = await self._find_pod(namespace, spec.resource_id)
        if pod is None:
            await self._ensure_namespace(spec, namespace)
            await progress(10, f"namespace {namespace} ready")
            pod = await self._create_pod(spec, config, namespace)
            log.info(
                "kubernetes.pod_created",
                resource_id=spec.resource_id,
                pod=f"{namespace}/{pod.metadata.name}",
            )
        else:
            log.info(
                "kubernetes.pod_adopted",
                resource_id=spec.resource_id,
                pod=f"{namespace}/{pod.metadata.name}",
            )
        await progress(30, f"pod {namespace}/{pod.metadata.name} created")
        pod, verdict = await self._wait_settled(pod, progress)
        if verdict.state != "running":
            log.warning(
                "kubernetes.pod_failed", resource_id=spec.resource_id, reason=verdict.reason
            )
            raise ProviderError(verdict.text or "the pod did not start")
        await progress(100, "running")
        return self._info(pod, verdict)

    async def _find_pod(self, namespace: str, resource_id: str) -> V1Pod | None:
        """Our live pod for ``resource_id`` (a terminating one is waited out first)."""
        pods = await self._call(
            self.core.list_namespaced_pod, namespace, label_selector=resource_selector(resource_id)
        )
        for pod in pods.items:
            if (pod.metadata.annotations or {}).get(RESOURCE_LABEL) != resource_id:
                continue
            if pod.metadata.deletion_timestamp:
                await self._wait_gone(pod)
                continue
            return pod
        return None

    async def _ensure_namespace(self, spec: NodeSpec, namespace: str) -> None:
        """Our namespace for the experiment, with its Pod Security labels and NetworkPolicy."""
        body = namespace_manifest(spec, namespace, self.pod_security)
        created = await self._call(self.core.create_namespace, body, allow=(409,))
        if created is not None:
            log.info(
                "kubernetes.namespace_created",
                namespace=namespace,
                experiment_id=spec.experiment_id,
            )
        else:
            await self._update_namespace(namespace, body["metadata"]["labels"])
        await self._put(
            self.networking.create_namespaced_network_policy,
            self.networking.patch_namespaced_network_policy,
            namespace,
            network_policy_manifest(spec, self.cluster_networks),
        )

    async def _update_namespace(self, namespace: str, labels: dict[str, str]) -> None:
        """Check an existing namespace is ours and alive; bring its labels up to date."""
        existing = await self._call(self.core.read_namespace, namespace)
        if existing.metadata.deletion_timestamp:
            raise TransientProviderError(
                f"namespace {namespace} is being deleted; retrying once it is gone"
            )
        current = existing.metadata.labels or {}
        if current.get(MANAGED_BY[0]) != MANAGED_BY[1]:
            raise ProviderError(
                f"namespace {namespace} exists and is not managed by slices-blueprint"
            )
        if any(current.get(k) != v for k, v in labels.items()):
            await self._call(self.core.patch_namespace, namespace, {"metadata": {"labels": labels}})
            log.info("kubernetes.namespace_labels_updated", namespace=namespace)

    async def _require_our_secrets(self, spec: NodeSpec, config: PodConfig, namespace: str) -> None:
        """ProviderError unless every Secret the pod mounts is one we made for this experiment."""
        for volume in config.volumes:
            if volume.secret is None:
                continue
            secret = await self._call(
                self.core.read_namespaced_secret, volume.secret, namespace, allow=(404,)
            )
            meta = secret.metadata if secret is not None else None
            ours = meta is not None and (meta.labels or {}).get(MANAGED_BY[0]) == MANAGED_BY[1]
            if not ours or (meta.annotations or {}).get(EXPERIMENT_LABEL) != spec.experiment_id:
                raise ProviderError(
                    f"volume {volume.name!r}: secret {volume.secret!r} is not a Secret "
                    "slices-blueprint created for this experiment"
                )

    async def _create_pod(self, spec: NodeSpec, config: PodConfig, namespace: str) -> V1Pod:
        name = pod_name(spec)
        await self._require_our_secrets(spec, config, namespace)
        if config.provision_mount:
            await self._put(
                self.core.create_namespaced_secret,
                self.core.patch_namespaced_secret,
                namespace,
                provision_secret(spec, name),
            )
        if spec.files:
            await self._put(
                self.core.create_namespaced_secret,
                self.core.patch_namespaced_secret,
                namespace,
                files_secret(spec, name),
            )
        if policy := services_policy_manifest(spec, name):
            await self._put(
                self.networking.create_namespaced_network_policy,
                self.networking.patch_namespaced_network_policy,
                namespace,
                policy,
            )
        if unnamed := unnamed_service_targets(spec):
            log.warning("kubernetes.guest_services_not_allowed", pod=f"{namespace}/{name}", targets=unnamed,
                        detail="host names cannot be allowed by a NetworkPolicy: give the services' addresses")
        for claim in claim_manifests(spec, config, name):
            await self._put(
                self.core.create_namespaced_persistent_volume_claim,
                self.core.patch_namespaced_persistent_volume_claim,
                namespace,
                claim,
            )
        pod = await self._create_with_retry(
            namespace,
            pod_manifest(
                spec, config, name, self.cpu_request_fraction, self.delete_grace, self.pod_security
            ),
        )
        if pod is not None:
            return pod
        existing = await self._call(self.core.read_namespaced_pod, name, namespace)
        if (existing.metadata.annotations or {}).get(RESOURCE_LABEL) != spec.resource_id:
            raise ProviderError(f"pod {namespace}/{name} exists and belongs to another resource")
        return existing

    @retry(
        retry=retry_if_exception_type(NamespaceNotReady),
        stop=stop_after_delay(30),
        wait=wait_exponential(multiplier=0.1, max=2),
        before_sleep=lambda state: log.info(
            "kubernetes.namespace_not_ready", attempt=state.attempt_number
        ),
        reraise=True,
    )
    async def _create_with_retry(self, namespace: str, body: dict[str, Any]) -> V1Pod | None:
        """Create the pod (None when it exists), riding out a fresh namespace's missing token."""
        return await self._call(self.core.create_namespaced_pod, namespace, body, allow=(409,))

    async def _put(
        self,
        create: Callable[..., Any],
        patch: Callable[..., Any],
        namespace: str,
        body: dict[str, Any],
    ) -> None:
        """Create an object, or bring an existing one (left by a crashed attempt) up to date."""
        if await self._call(create, namespace, body, allow=(409,)) is None:
            await self._call(patch, body["metadata"]["name"], namespace, body)

    # ------------------------------------------------------------ watching a pod

    def _next_change(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        timeout: float,
        _request_timeout: tuple[float, float],
    ) -> tuple[str, V1Pod] | None:
        """Block until the pod changes after ``resource_version`` (a watch), or ``timeout``."""
        stream = watch.Watch().stream(
            self.core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=max(1, math.ceil(timeout)),
            _request_timeout=(_request_timeout[0], timeout + _request_timeout[1]),
        )
        try:
            for event in stream:
                return event["type"], event["object"]
        except ApiException as exc:
            if exc.status != 410:  # 410: our version is too old; the caller re-reads
                raise
        finally:
            stream.close()
        return None

    async def _await_change(self, pod: V1Pod, timeout: float) -> V1Pod | None:
        """The pod's next version (the same pod re-read after ``timeout``); None once gone.

        Watches block a thread of their own pool (not the loop's shared one) for at most
        ``WATCH_SLICE`` seconds, so a stopping worker never waits long for one.
        """
        meta = pod.metadata
        change = await self._call(
            self._next_change,
            meta.namespace,
            meta.name,
            meta.resource_version,
            min(timeout, WATCH_SLICE),
            executor=self._watchers,
        )
        if change is None:
            return await self._call(
                self.core.read_namespaced_pod, meta.name, meta.namespace, allow=(404,)
            )
        kind, new = change
        return None if kind == "DELETED" else new

    async def _wait_settled(self, pod: V1Pod, progress: Progress) -> tuple[V1Pod, PodVerdict]:
        """Follow the pod until it runs or fails; ProviderError after ``ready_timeout``."""
        deadline = time.monotonic() + self.ready_timeout
        shown: str | None = None
        while True:
            verdict = pod_verdict(pod, self.unschedulable_grace)
            if verdict.state != "provisioning":
                return pod, verdict
            if verdict.text != shown:
                shown = verdict.text
                await progress(40 if pod.spec.node_name is None else 60, shown or "starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(
                    f"the pod did not run within {self.ready_timeout:.0f} s ({shown})"
                )
            new = await self._await_change(pod, min(remaining, verdict.recheck_in or remaining))
            if new is None:
                raise ProviderError(
                    f"pod {pod.metadata.namespace}/{pod.metadata.name} was deleted while starting"
                )
            pod = new

    async def _wait_gone(self, pod: V1Pod) -> None:
        deadline = time.monotonic() + self.delete_grace + 60
        current: V1Pod | None = pod
        while current is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientProviderError(
                    f"pod {pod.metadata.namespace}/{pod.metadata.name} is still terminating"
                )
            current = await self._await_change(current, remaining)

    def _info(self, pod: V1Pod, verdict: PodVerdict) -> NodeInfo:
        meta, status = pod.metadata, pod.status
        return NodeInfo(
            provider_resource_id=f"{meta.namespace}/{meta.name}",
            state=verdict.state,
            reason=verdict.text,
            access={"ipv4": status.pod_ip} if status.pod_ip else {},
            provider_data={
                "namespace": meta.namespace,
                "pod": meta.name,
                "uid": meta.uid,
                "node": pod.spec.node_name,
                "phase": status.phase,
            },
        )

    # ------------------------------------------------------------ delete, status, reset

    async def delete(self, provider_resource_id: str, progress: Progress) -> None:
        namespace, name = split_resource_id(provider_resource_id)
        await self._delete_pod(namespace, name)
        await progress(80, "pod deleted")
        await self._release_namespace(namespace)
        await progress(100, "deleted")

    async def _delete_pod(self, namespace: str, name: str) -> None:
        """Delete the pod with its grace period, wait until gone, then its Secret and claims."""
        pod = await self._call(self.core.read_namespaced_pod, name, namespace, allow=(404,))
        if pod is None:
            return
        await self._call(
            self.core.delete_namespaced_pod,
            name,
            namespace,
            grace_period_seconds=self.delete_grace,
            allow=(404,),
        )
        await self._wait_gone(pod)
        resource_label = (pod.metadata.labels or {}).get(RESOURCE_LABEL)
        if resource_label:
            selector = f"{MANAGED_SELECTOR},{RESOURCE_LABEL}={resource_label}"
            await self._call(
                self.core.delete_collection_namespaced_secret, namespace, label_selector=selector
            )
            await self._call(
                self.core.delete_collection_namespaced_persistent_volume_claim,
                namespace,
                label_selector=selector,
            )
            await self._call(
                self.networking.delete_collection_namespaced_network_policy,
                namespace,
                label_selector=selector,
            )
        log.info(
            "kubernetes.pod_deleted",
            pod=f"{namespace}/{name}",
            resource_id=(pod.metadata.annotations or {}).get(RESOURCE_LABEL),
        )

    async def _release_namespace(self, namespace: str) -> None:
        """Delete our namespace once no pod of ours is left in it."""
        ns = await self._call(self.core.read_namespace, namespace, allow=(404,))
        if ns is None or (ns.metadata.labels or {}).get(MANAGED_BY[0]) != MANAGED_BY[1]:
            return
        pods = await self._call(
            self.core.list_namespaced_pod, namespace, label_selector=MANAGED_SELECTOR
        )
        if pods.items:
            return
        await self._call(self.core.delete_namespace, namespace, allow=(404, 409))
        log.info("kubernetes.namespace_deleted", namespace=namespace)

    async def status(self, provider_resource_id: str) -> NodeInfo:
        namespace, name = split_resource_id(provider_resource_id)
        pod = await self._call(self.core.read_namespaced_pod, name, namespace, allow=(404,))
        if pod is None:
            return NodeInfo(provider_resource_id=provider_resource_id, state="gone")
        return self._info(pod, pod_verdict(pod, self.unschedulable_grace))

    async def reset(
        self, provider_resource_id: str, spec: NodeSpec, progress: Progress
    ) -> NodeInfo:
        """Recreate the pod from its image (emptyDir and claims start empty)."""
        await self._delete_pod(*split_resource_id(provider_resource_id))
        await progress(20, "old pod deleted")
        return await self.create(spec, progress)

    async def catalog(self) -> Catalog:
        return Catalog()

    async def list_managed(self) -> list[ManagedNode]:
        """Pods labelled ours in namespaces labelled ours."""
        namespaces = await self._call(self.core.list_namespace, label_selector=MANAGED_SELECTOR)
        ours = {ns.metadata.name for ns in namespaces.items}
        pods = await self._call(
            self.core.list_pod_for_all_namespaces, label_selector=MANAGED_SELECTOR
        )
        return [
            ManagedNode(
                provider_resource_id=f"{pod.metadata.namespace}/{pod.metadata.name}",
                resource_id=(pod.metadata.annotations or {}).get(RESOURCE_LABEL),
                state=pod_verdict(pod, self.unschedulable_grace).state,
            )
            for pod in pods.items
            if pod.metadata.namespace in ours
        ]

    async def logs(self, provider_resource_id: str, tail_lines: int = 200) -> str:
        namespace, name = split_resource_id(provider_resource_id)
        try:
            return await asyncio.to_thread(
                self.core.read_namespaced_pod_log,
                name,
                namespace,
                container=CONTAINER,
                tail_lines=tail_lines,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ProviderError(f"pod {provider_resource_id} no longer exists") from None
            if exc.status == 400:  # e.g. the container has not started yet
                raise ProviderError(f"no logs yet: {api_message(exc)}") from None
            raise NotSupported(
                f"the cluster has no logs for pod {provider_resource_id}: {api_message(exc)}"
            ) from None
        except (HTTPError, OSError) as exc:
            raise provider_error(exc, self.host) from None

    async def close(self) -> None:
        self._watchers.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.api_client.close)


DRIVER = KubernetesDriver
