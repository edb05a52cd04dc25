"""Kubeconfig handling for the Kubernetes provider: parsing and checking uploaded files,
building a private API client that keeps no key material on disk, and turning cluster
failures into the errors the task layer understands."""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
from typing import Any

import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader
from urllib3 import Retry
from urllib3.util.ssl_ import create_urllib3_context

from slices_blueprint.providers.base import ProviderError, TransientProviderError, connect_reason
from slices_blueprint.providers.endpoints import EndpointPolicy, UnsafeCredential

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
VALIDATE_TIMEOUT = (3.0, 10.0)
# The client may point at files; an uploaded kubeconfig may not (see the module docstring).
_FILE_KEYS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile", "exec", "auth-provider"),
}
# A proxy would receive the user's token and reach addresses the endpoint policy never saw.
_PROXY_KEY = "proxy-url"
_RAM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_BUILD_LOCK = threading.Lock()
# What a new namespace lacks for a moment (Kubernetes <= 1.23 admission: 403 "service account
# ... not found", 500 "No API token found for service account"). Our pods mount no token, which
# avoids the second; both are retried.
_SA_RACE = ("service account", "serviceaccount")


class NamespaceNotReady(TransientProviderError):
    """A fresh namespace has no default service account (token) yet."""


def parse_kubeconfig(plaintext: bytes, *, uploaded: bool) -> dict[str, Any]:
    """The kubeconfig as a mapping; ProviderError for anything unusable (no secret echoed)."""
    try:
        config = yaml.safe_load(plaintext)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ProviderError(
            f"the kubeconfig is not valid YAML: {exc.problem} (line {line})"
        ) from None
    except yaml.YAMLError:
        raise ProviderError("the kubeconfig is not valid YAML") from None
    if not isinstance(config, dict):
        raise ProviderError(
            "the kubeconfig is not a YAML mapping (apiVersion, clusters, users, contexts)"
        )
    if not config.get("contexts"):
        raise ProviderError("the kubeconfig has no contexts")
    if uploaded:
        _refuse_unsafe_keys(config)
    return config


def _refuse_unsafe_keys(config: dict[str, Any]) -> None:
    """UnsafeCredential for file references, plugins and proxies in an uploaded kubeconfig."""
    for kind, keys in _FILE_KEYS.items():
        for entry in config.get(f"{kind}s") or []:
            body = entry.get(kind) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                raise ProviderError(f"every entry of {kind}s needs a name and a {kind} mapping")
            if kind == "cluster" and _PROXY_KEY in body:
                raise UnsafeCredential(
                    f"cluster {entry.get('name')!r} sets {_PROXY_KEY}: an uploaded kubeconfig may "
                    "not name a proxy; the service connects to the cluster's server directly"
                )
            found = sorted(k for k in keys if k in body)
            if found:
                raise UnsafeCredential(
                    f"{kind} {entry.get('name')!r} uses {', '.join(found)}: an uploaded kubeconfig "
                    "must carry its certificates and token inline (*-data fields, token); file "
                    "paths and exec/auth-provider plugins are not accepted"
                )


def pick_context(config: dict[str, Any], selected: str | None) -> str:
    """``selected``, else the current context, else the only one; ProviderError otherwise."""
    names = [c.get("name") for c in config["contexts"] if isinstance(c, dict)]
    choice = selected or config.get("current-context") or (names[0] if len(names) == 1 else None)
    if choice is None:
        raise ProviderError(f"choose a context; the kubeconfig has: {', '.join(map(str, names))}")
    if choice not in names:
        raise ProviderError(
            f"context {choice!r} is not in the kubeconfig (it has: {', '.join(map(str, names))})"
        )
    return choice


def _hold_tls_in_memory(client: ApiClient) -> None:
    """Move the client's TLS files into an SSL context so that the files can be removed."""
    cfg = client.configuration
    context = create_urllib3_context(
        cert_reqs=ssl.CERT_REQUIRED if cfg.verify_ssl else ssl.CERT_NONE
    )
    if cfg.verify_ssl and cfg.ssl_ca_cert:
        context.load_verify_locations(cafile=cfg.ssl_ca_cert)
    elif cfg.verify_ssl:
        context.load_default_certs()
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    cfg.ssl_ca_cert = cfg.cert_file = cfg.key_file = None
    client.rest_client.pool_manager.connection_pool_kw.update(
        ssl_context=context, ca_certs=None, cert_file=None, key_file=None
    )


def build_api_client(config: dict[str, Any], context: str, base_path: str = "",
                     policy: EndpointPolicy | None = None) -> ApiClient:
    """A private ApiClient for ``context``; no certificate or key stays on disk. With
    ``policy`` (an uploaded kubeconfig), its server must be an endpoint the policy allows and
    the client connects to it directly (no proxy, neither from the file nor the environment)."""
    cfg = Configuration()
    # the client caches its temporary files by content, across threads: one build at a time
    with _BUILD_LOCK, tempfile.TemporaryDirectory(prefix="slices-kube-", dir=_RAM_DIR) as tmp:
        try:
            loader = KubeConfigLoader(
                config_dict=config,
                active_context=context,
                config_base_path=base_path,
                temp_file_path=tmp,
            )
            loader.load_and_set(cfg)
        except (ConfigException, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProviderError(f"kubeconfig context {context!r} is unusable: {exc}") from None
        if policy is not None:
            policy.check_url(cfg.host, "the kubeconfig's server")
            cfg.proxy = None  # the client would take HTTPS_PROXY from the environment
        cfg.retries = Retry(total=2, read=0, status=0, redirect=0, backoff_factor=0.2)
        client = ApiClient(cfg)
        try:
            _hold_tls_in_memory(client)
        except (ssl.SSLError, OSError) as exc:
            raise ProviderError(
                f"kubeconfig context {context!r} has unusable TLS material: {exc}"
            ) from None
    return client


def api_message(exc: ApiException) -> str:
    try:
        body = yaml.safe_load(exc.body) if exc.body else None
    except yaml.YAMLError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{exc.status} {exc.reason}".strip()


def provider_error(exc: Exception, host: str) -> ProviderError:
    """A cluster failure as the error the task layer understands."""
    if isinstance(exc, ApiException):
        message = api_message(exc)
        if exc.status == 401:
            return ProviderError(
                f"the cluster at {host} rejected the credentials (401 Unauthorized)"
            )
        if exc.status in (403, 500) and any(s in message for s in _SA_RACE):
            return NamespaceNotReady(message)
        if exc.status == 403 and "being terminated" in message:
            return TransientProviderError(f"{message}; retrying once it is gone")
        if exc.status == 403:
            return ProviderError(f"not allowed by the cluster: {message}")
        if exc.status in (0, 429) or exc.status >= 500:
            return TransientProviderError(f"cluster error: {message}")
        return ProviderError(f"the cluster refused: {message}")
    return TransientProviderError(f"cannot reach the cluster at {host} ({connect_reason(exc)})")
