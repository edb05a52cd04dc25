"""Address allocation, the QEMU user-mode netdev and the nftables text (no root needed; the rules are applied for real
by the microvm-marked tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from slices_blueprint.agent.config import AgentSettings
from slices_blueprint.agent.network import BridgeNetwork, Forward, ServicePath, bridgeable, tap_name
from slices_blueprint.agent.vmm.base import GuestForward, UserNet
from slices_blueprint.agent.vmm.qemu import user_netdev


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


def test_user_mode_is_restricted_and_forwards_only_named_services() -> None:
    net = UserNet(mac="52:54:00:00:00:01", bind="127.0.0.1", host_port=22000)
    assert user_netdev(net) == ("user,id=net0,net=10.0.2.0/24,restrict=on,"
                                "hostfwd=tcp:127.0.0.1:22000-:22")
    kme = GuestForward(guest_ip="10.0.2.100", guest_port=443, host="127.0.0.1", host_port=8443)
    assert user_netdev(replace(net, guest_forwards=(kme,))).endswith(
        ",restrict=on,hostfwd=tcp:127.0.0.1:22000-:22,"
        "guestfwd=tcp:10.0.2.100:443-tcp:127.0.0.1:8443")


def test_bridge_rules_confine_guests_and_pin_each_tap_to_its_addresses() -> None:
    net = network(guest_allowed_networks=["10.20.0.0/16"])
    rules = net.ruleset([Forward("vm-a", 22000, "10.9.0.2", "sbta", "52:54:00:00:00:0a")])
    assert 'iifname "slicesbr0" counter drop comment "guests reach nothing on the host"' in rules
    assert 'iifname "slicesbr0" ip daddr { 10.20.0.0/16 } accept' in rules
    assert rules.index("10.20.0.0/16 } accept") < rules.index("169.254.0.0/16")
    assert 'iifname "sbta" ether saddr != 52:54:00:00:00:0a counter drop' in rules
    assert 'iifname "sbta" ether type ip ip saddr != 10.9.0.2 counter drop' in rules
    assert rules.rstrip().endswith('iifname "sbt*" counter drop '
                                   'comment "spoofed, not IPv4/ARP, or no running VM"\n  }\n}')


def test_a_guest_service_is_one_dnat_for_that_guest_and_one_accept_for_its_target() -> None:
    kme = ServicePath(address="10.0.2.100", port=443, target="192.0.2.7", target_port=47100)
    rules = network().ruleset([Forward("vm-a", 22000, "10.9.0.2", "sbta", "52:54:00:00:00:0a", (kme,)),
                               Forward("vm-b", 22001, "10.9.0.3", "sbtb", "52:54:00:00:00:0b")])
    dnat = ('iifname "slicesbr0" ip saddr 10.9.0.2 ip daddr 10.0.2.100 tcp dport 443 '
            'dnat to 192.0.2.7:47100 comment "vm:vm-a service"')
    accept = ('iifname "slicesbr0" ip saddr 10.9.0.2 ip daddr 192.0.2.7 tcp dport 47100 '
              'ct status dnat accept comment "vm:vm-a service"')
    assert rules.count(dnat) == 1 and rules.count(accept) == 2  # input (host-local) and forward
    assert rules.index(accept) < rules.index("guests reach nothing on the host")
    assert rules.rindex(accept) < rules.index("guests reach public addresses only")
    assert "10.9.0.3 ip daddr" not in rules  # the other guest has no such path
    assert [bridgeable(t) for t in ("192.0.2.7", "127.0.0.1", "kme.example", "::1")] == [True, False, False, False]
