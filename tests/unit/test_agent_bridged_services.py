"""A bridged guest is refused a guest service it could not reach, instead of booting without it."""

from __future__ import annotations

import pytest

from slices_blueprint.agent.manager import GuestServiceRefused, check_bridged_services
from slices_blueprint.agent.protocol import GuestService, VMSpec


def spec(*targets: str) -> VMSpec:
    return VMSpec(id="vm-1", services=[
        GuestService(hostname=f"kme-{i}.qkd.internal", port=443, target_host=t, target_port=47100 + i)
        for i, t in enumerate(targets)])


@pytest.mark.parametrize("target", ["127.0.0.1", "kme.example.invalid", "::1", "0.0.0.0"])
def test_unroutable_targets_are_refused_naming_them(target: str) -> None:
    with pytest.raises(GuestServiceRefused, match="qkd_kme_public_host") as refused:
        check_bridged_services(spec("198.51.100.7", target))
    assert target in str(refused.value) and "198.51.100.7" not in str(refused.value)


def test_routable_ipv4_targets_pass() -> None:
    check_bridged_services(spec("198.51.100.7", "198.51.100.8"))
    check_bridged_services(spec())
