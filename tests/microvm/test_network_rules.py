"""Address allocation and the NAT table text (no root needed; the rules are applied for real
by the microvm-marked tests)."""

from __future__ import annotations

import ipaddress

import pytest

from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.network import BridgeNetwork, Forward, tap_name


def network(**overrides) -> BridgeNetwork:
    return BridgeNetwork(AgentSettings(subnet=ipaddress.IPv4Network("10.9.0.0/29"), **overrides))


def test_allocation_skips_the_gateway_and_every_address_in_use() -> None:
    net = network()
    assert net.allocate([]) == "10.9.0.2/29"
    assert net.allocate(["10.9.0.2/29", "10.9.0.4/29"]) == "10.9.0.3/29"
    with pytest.raises(LookupError, match="no free address"):
        net.allocate([f"10.9.0.{i}/29" for i in range(2, 7)])


def test_ruleset_is_whole_and_limits_egress_only_when_told() -> None:
    rules = network().ruleset([Forward("vm-b", 22001, "10.9.0.3", "sbtb", "52:54:00:00:00:0b"),
                               Forward("vm-a", 22000, "10.9.0.2", "sbta", "52:54:00:00:00:0a")])
    assert rules.startswith("table ip slices_slicesbr0\ndelete table ip slices_slicesbr0\n")
    assert rules.index("dport 22000") < rules.index("dport 22001")
    assert 'dnat to 10.9.0.2:22 comment "vm:vm-a"' in rules
    assert "ip saddr 10.9.0.0/29 ip daddr != 10.9.0.0/29 masquerade" in rules
    assert 'oifname "uplink" masquerade' in network(egress_interface="uplink").ruleset([])
    assert "dnat" not in network().ruleset([])


def test_tap_names_fit_linux_and_differ_per_vm() -> None:
    assert len(tap_name("resource_site_" + "x" * 60)) <= 15
    assert tap_name("a") != tap_name("b")
