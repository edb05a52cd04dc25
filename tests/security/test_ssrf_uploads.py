"""Uploaded credentials cannot make the service call what the site does not allow.

Each test uploads a credential through the real API (uvicorn on loopback, real PostgreSQL)
and shows it refused with a 422 naming the field and the address. Where the attack needs an
endpoint (a proxy, a vendor-profile URL), a listener on 127.0.0.1 plays it and must receive
nothing. The non-public IPv6 forms are never contacted: the guard refuses them before any
connection, and the ``loopback_only`` fence refuses (and fails the test on) any connection
this process attempts beyond loopback, so even a regressed guard sends them no packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from slices_blueprint.core.deps import API_PREFIX
from slices_blueprint.core.dev_issuer import mint_dev_token
from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.kubernetes.driver import KubernetesDriver
from slices_blueprint.providers.openstack.driver import OpenStackDriver
from tests.conftest import (
    LOOPBACK_POLICY,
    LiveServer,
    free_port,
    fresh_database,
    make_settings,
    start_server,
)
from tests.security.netguard import LoopbackListener, loopback_only

TOKEN = "s3cret-bearer-token-of-the-user"
HOOK_CALLS: list[Any] = []


def record_hook_call(connection: Any) -> None:
    """What an uploaded ``vendor_hook`` would make the service run (it must never run)."""
    HOOK_CALLS.append(connection)


def kubeconfig(server: str, **cluster: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    })


def clouds_yaml(auth_url: str, **cloud: str) -> str:
    auth = {"auth_url": auth_url, "username": "u", "password": TOKEN, "project_name": "p",
            "user_domain_name": "Default", "project_domain_name": "Default"}
    return yaml.safe_dump({"clouds": {"evil": {"auth": auth, **cloud}}})


def upload(server: LiveServer, kind: str, content: str) -> httpx.Response:
    token = mint_dev_token(server.settings, user="mallory", project="demo")
    return httpx.put(
        f"{server.url}{API_PREFIX}/credentials/{kind}",
        headers={"Authorization": f"Bearer {token}"},
        json={"content": content},
        timeout=30,
    )


def refused(response: httpx.Response, *needles: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert " credential refused: " in detail, detail
    for needle in needles:
        assert needle in detail, detail
    assert TOKEN not in response.text
    return detail


@pytest.fixture(autouse=True)
def fence() -> Iterator[None]:
    with loopback_only() as attempts:
        yield
    assert attempts == [], f"the service tried to connect to {attempts}"


@pytest.fixture(scope="module")
def strict(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with the default policy: uploads may reach public addresses only."""
    with fresh_database(pg_admin_url) as url:
        settings = make_settings(tmp_path_factory.mktemp("strict"), url, free_port(),
                                 uploaded_endpoints_allowed=[])
        server = start_server(settings, url, worker=False)
        yield server
        server.stop()


# ------------------------------------------------------------------ proxies and profiles


def test_kubeconfig_proxy_url_is_refused_and_the_proxy_gets_nothing(live: LiveServer) -> None:
    # the site allows loopback servers (as the test site does): only the proxy is the attack
    with LoopbackListener() as proxy:
        server = f"http://127.0.0.1:{free_port()}"
        response = upload(live, "kubernetes", kubeconfig(server, **{"proxy-url": proxy.url}))
        refused(response, "cluster 'c' sets proxy-url")
        assert proxy.url not in response.text
        proxy.assert_untouched()


def _proxy_environment(monkeypatch: pytest.MonkeyPatch, proxy: LoopbackListener) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_uploaded_kubeconfig_ignores_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY of the service's host is not used for an uploaded kubeconfig: the client
    connects to the (closed) server itself and the proxy hears nothing."""
    with LoopbackListener() as proxy:
        _proxy_environment(monkeypatch, proxy)
        closed = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(ProviderError, match=f"cannot reach the cluster at {closed}"):
            await KubernetesDriver.validate_credential(
                kubeconfig(closed).encode(), None, LOOPBACK_POLICY)
        proxy.assert_untouched()


async def test_uploaded_clouds_yaml_ignores_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for the guarded OpenStack session (the proxy would resolve names past the
    guard, and requests would add the service's .netrc logins)."""
    with LoopbackListener() as proxy:
        _proxy_environment(monkeypatch, proxy)
        closed = f"http://127.0.0.1:{free_port()}/v3"
        with pytest.raises(ProviderError, match="could not connect"):
            await OpenStackDriver.validate_credential(
                clouds_yaml(closed).encode(), None, LOOPBACK_POLICY)
        proxy.assert_untouched()


@pytest.mark.parametrize("key", ["profile", "cloud"])
def test_clouds_yaml_vendor_profile_url_is_refused_and_never_fetched(
    live: LiveServer, key: str
) -> None:
    with LoopbackListener() as profile_host:
        content = clouds_yaml(f"http://127.0.0.1:{free_port()}/v3", **{key: profile_host.url})
        response = upload(live, "openstack", content)
        refused(response, f"cloud 'evil' sets {key}")
        profile_host.assert_untouched()


def test_clouds_yaml_vendor_hook_is_refused_and_never_run(live: LiveServer) -> None:
    hook = f"{__name__}:record_hook_call"
    content = clouds_yaml(f"http://127.0.0.1:{free_port()}/v3", vendor_hook=hook)
    refused(upload(live, "openstack", content), "cloud 'evil' sets vendor_hook")
    assert HOOK_CALLS == []


@pytest.mark.parametrize("key", ["cacert", "cert", "key"])
def test_clouds_yaml_naming_server_files_is_refused(live: LiveServer, key: str) -> None:
    content = clouds_yaml(f"http://127.0.0.1:{free_port()}/v3", **{key: "/etc/ssl/private/x.pem"})
    refused(upload(live, "openstack", content), f"cloud 'evil' sets {key}", "file on this server")


# ------------------------------------------------------------------ non-public addresses

NON_PUBLIC = [
    ("::127.0.0.1", "IPv4-compatible loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped metadata address"),
    ("64:ff9b::127.0.0.1", "NAT64 of loopback"),
    ("64:ff9b::169.254.169.254", "NAT64 of the metadata address"),
    ("64:ff9b::10.0.0.1", "NAT64 of a private address"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4 of loopback"),
    ("2002:a9fe:a9fe::1", "6to4 of the metadata address"),
    ("2002:c0a8:101::1", "6to4 of 192.168.1.1"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo, client 127.0.0.1"),
    ("fec0::1", "site-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("100::1", "discard-only"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("ff02::1", "multicast"),
]


@pytest.mark.parametrize(("address", "form"), NON_PUBLIC, ids=[f for _, f in NON_PUBLIC])
def test_non_public_ipv6_forms_are_refused_as_kubeconfig_server(
    strict: LiveServer, address: str, form: str
) -> None:
    shown = str(ipaddress.ip_address(address))
    response = upload(strict, "kubernetes", kubeconfig(f"https://[{address}]:6443"))
    refused(response, "the kubeconfig's server", f"reaches {shown}", "uploaded_endpoints_allowed")


@pytest.mark.parametrize(("address", "form"), NON_PUBLIC, ids=[f for _, f in NON_PUBLIC])
def test_non_public_ipv6_forms_are_refused_as_auth_url(
    strict: LiveServer, address: str, form: str
) -> None:
    shown = str(ipaddress.ip_address(address))
    response = upload(strict, "openstack", clouds_yaml(f"http://[{address}]:5000/v3"))
    refused(response, "the auth_url", f"reaches {shown}", "uploaded_endpoints_allowed")


def test_embedded_address_is_named(strict: LiveServer) -> None:
    response = upload(strict, "openstack", clouds_yaml("http://[64:ff9b::a9fe:a9fe]:5000/v3"))
    refused(response, "64:ff9b::a9fe:a9fe (which carries the IPv4 address 169.254.169.254)")


@pytest.mark.parametrize("kind", ["kubernetes", "openstack"])
def test_a_name_resolving_to_loopback_is_refused(strict: LiveServer, kind: str) -> None:
    with LoopbackListener() as target:
        url = f"http://localhost:{target.port}"
        content = kubeconfig(url) if kind == "kubernetes" else clouds_yaml(f"{url}/v3")
        detail = refused(upload(strict, kind, content), f"{url}", "reaches ")
        assert "127.0.0.1" in detail or "::1" in detail
        target.assert_untouched()


def test_userinfo_in_a_refused_url_is_not_echoed(strict: LiveServer) -> None:
    response = upload(strict, "openstack", clouds_yaml(f"http://admin:{TOKEN}@10.0.0.1:5000/v3"))
    refused(response, "http://10.0.0.1:5000/v3 reaches 10.0.0.1")
