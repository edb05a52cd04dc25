"""Uploaded credentials may reach public addresses and what the site allows, nothing else."""

from __future__ import annotations

import pytest

from slices_blueprint.providers.base import ProviderError
from slices_blueprint.providers.endpoints import EndpointNotAllowed, EndpointPolicy


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:5000/v3",
    "https://10.1.2.3:6443",
    "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
    "http://[::1]:8774/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
    "http://[fd00::1]/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0:5000/",
    "http://localhost:5000/v3",  # a name resolving to loopback
])
def test_non_public_endpoints_are_refused_by_default(url: str) -> None:
    with pytest.raises(EndpointNotAllowed, match="uploaded_endpoints_allowed") as refused:
        EndpointPolicy().check_url(url, "the auth_url")
    assert str(refused.value).startswith(f"the auth_url {url} reaches ")


def test_public_addresses_and_allowed_networks_and_names_pass() -> None:
    EndpointPolicy().check_url("https://1.1.1.1:5000/v3", "the auth_url")
    EndpointPolicy().check_url("https://[2606:4700:4700::1111]/", "the auth_url")
    # IPv6 forms carrying a public IPv4 address are public too (NAT64, 6to4, mapped)
    for public in ("64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"):
        EndpointPolicy().check_url(f"https://[{public}]/", "the auth_url")
    policy = EndpointPolicy(["10.0.0.0/8", "*.cloud.internal"])
    policy.check_url("https://10.20.30.40:6443", "the server")
    policy.check_url("https://keystone.cloud.internal:5000/v3", "the auth_url")  # no lookup
    with pytest.raises(EndpointNotAllowed, match="172.16.0.1"):
        policy.check_url("https://172.16.0.1:5000", "the auth_url")
    assert policy.key == ("10.0.0.0/8", "*.cloud.internal")
    # an allowed IPv4 network allows it behind NAT64 / 6to4 too, nothing else
    policy.check_url("https://[64:ff9b::a14:1e28]/", "the server")
    with pytest.raises(EndpointNotAllowed, match=r"carries the IPv4 address 172.16.0.1"):
        policy.check_url("https://[2002:ac10:1::1]/", "the server")


def test_hostless_and_unresolvable_urls_are_explained() -> None:
    with pytest.raises(EndpointNotAllowed, match="names no host"):
        EndpointPolicy().check_url("/v3", "the auth_url")
    with pytest.raises(ProviderError, match="cannot resolve no-such-host.invalid"):
        EndpointPolicy().check_url("http://no-such-host.invalid:5000", "the auth_url")
