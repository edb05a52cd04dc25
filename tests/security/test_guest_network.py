"""From inside a real QEMU guest (TCG), try to reach what a guest must not: the service and
other listeners on the host, the agent, cloud metadata (169.254.169.254), private networks;
and, on a bridge, to send as another VM. Every target is a listener inside a network
namespace this test made; nothing leaves the machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from tests.microvm.conftest import TestHost, make_host  # noqa: F401  (fixture)
from tests.microvm.guest_tools import BOOT_TIMEOUT, NsListeners, SSHKey, ns_sh, probe_all

pytestmark = pytest.mark.microvm

GUEST_HTTPD = ("mkdir -p /tmp/www && echo guest-local-page > /tmp/www/index.html && "
               "httpd -p 127.0.0.1:8080 -h /tmp/www")


def boot(host: TestHost, key: SSHKey, vm_id: str) -> dict:
    with host.client() as api:
        response = api.post("/v1/vms", params={"wait_ready": BOOT_TIMEOUT}, json={
            "id": vm_id, "memory_mib": 160, "disk_mib": 64, "ssh_authorized_keys": [key.public]})
    assert response.status_code == 201 and response.json()["guest_ready"], response.text
    return response.json()


def assert_refused(seen: dict[str, str], targets: list[str]) -> None:
    for target in targets:
        assert "rc=0" not in seen[target] and "LISTENER" not in seen[target] \
            and '"ok"' not in seen[target], f"the guest reached {target}: {seen[target]}"


def test_guest_user_mode_reaches_nothing_on_its_host(make_host, tmp_path: Path) -> None:  # noqa: F811
    host = make_host.prepare()
    host.exec("ip", "addr", "add", "169.254.169.254/32", "dev", "lo")  # no dummy module here
    service, other = "127.0.0.1:18000", "127.0.0.1:18001"  # the service stands on loopback
    listeners = NsListeners(host.ns, tmp_path / "hits.log", [
        service, other, "169.254.169.254:18002", f"{host.address}:18003"])
    host.start_agent(network_mode="user")
    key = SSHKey(tmp_path)
    try:
        vm = boot(host, key, "vm-slirp")
        port = vm["ssh"]["port"]
        assert key.run(host.address, port, "echo guest-shell-ok").strip() == "guest-shell-ok"
        key.run(host.address, port, GUEST_HTTPD)
        forbidden = ["10.0.2.2:18000", "10.0.2.2:18001", "10.0.2.2:8700",  # slirp's host alias
                     "169.254.169.254:18002", f"{host.address}:18003", f"{host.address}:8700"]
        seen = probe_all(key, host.address, port, ["127.0.0.1:8080", *forbidden])
        # the probe does see a server where there is one: the guest's own
        assert "guest-local-page" in seen["127.0.0.1:8080"] and "rc=0" in seen["127.0.0.1:8080"]
        assert_refused(seen, forbidden)
        assert listeners.hits() == [], "a host listener was connected to from the guest"
    finally:
        listeners.stop()


def _lan(host: TestHost) -> str:
    """A second namespace behind the host: another host's management address (10.77.0.5),
    cloud metadata (169.254.169.254) and a network the operator allows (10.78.0.5)."""
    lan = f"{host.ns}l"
    subprocess.run(["ip", "netns", "add", lan], check=True)
    host.exec("ip", "link", "add", "lanhost", "type", "veth", "peer", "name", "lanpeer",
              "netns", lan)
    ns_sh(host.ns, "ip addr add 10.77.0.1/24 dev lanhost && ip link set lanhost up && "
                   "ip route add 10.78.0.0/24 via 10.77.0.5 && "
                   "ip route add 169.254.169.254/32 via 10.77.0.5")
    ns_sh(lan, "ip link set lo up && ip addr add 10.77.0.5/24 dev lanpeer && "
               "ip link set lanpeer up && ip addr add 10.78.0.5/32 dev lo && "
               "ip addr add 169.254.169.254/32 dev lo")
    return lan


SPOOF = """#!/bin/sh
p() {{ out=$(timeout 5 wget -q -O - http://{allowed}/$1 2>&1); rc=$?; echo "$1 => $(echo $out) rc=$rc"; }}
net() {{ ip addr flush dev eth0; ip addr add $1 dev eth0; ip route add default via {gw}; }}
mac() {{ ip link set eth0 down; ip link set eth0 address $1; ip link set eth0 up; }}
sleep 2
p before
net {other_ip}
p spoofed-ip
net {ipv4}
mac {other_mac}
ip route add default via {gw}
p spoofed-mac
mac {mac}
ip route add default via {gw}
p after
echo finished
"""


def test_guest_bridge_reaches_public_and_allowed_only_and_cannot_spoof(
        make_host, tmp_path: Path) -> None:  # noqa: F811
    host = make_host.prepare()
    lan = _lan(host)
    allowed = "10.78.0.5:18000"
    on_host = NsListeners(host.ns, tmp_path / "host-hits.log", ["0.0.0.0:18000"])
    on_lan = NsListeners(lan, tmp_path / "lan-hits.log",
                         ["10.77.0.5:18000", "169.254.169.254:18000", allowed])
    host.start_agent(guest_allowed_networks='["10.78.0.0/24"]')
    key = SSHKey(tmp_path)
    try:
        vm = boot(host, key, "vm-bridge")
        port, ipv4 = vm["ssh"]["port"], vm["ipv4"]
        gateway = "172.30.0.1"
        key.run(host.address, port, GUEST_HTTPD)
        forbidden = [f"{gateway}:8700", f"{host.address}:8700",  # the agent
                     f"{gateway}:18000", f"{host.address}:18000", "10.77.0.1:18000",  # host
                     "10.77.0.5:18000", "169.254.169.254:18000"]  # other hosts, metadata
        seen = probe_all(key, host.address, port, ["127.0.0.1:8080", allowed, *forbidden])
        assert "guest-local-page" in seen["127.0.0.1:8080"]
        assert f"LISTENER {allowed}" in seen[allowed] and "rc=0" in seen[allowed], seen[allowed]
        assert_refused(seen, forbidden)
        assert on_host.hits() == []
        assert [h.split()[0] for h in on_lan.hits()] == [allowed]
        # the allowed listener saw the host's NAT address, not the guest's
        assert on_lan.hits()[0].split()[1] == "10.77.0.1"

        spoof_as_another_vm(host, key, port, ipv4, allowed, on_lan)
    finally:
        on_host.stop()
        on_lan.stop()
        subprocess.run(["ip", "netns", "del", lan], check=False)


def spoof_as_another_vm(host: TestHost, key: SSHKey, port: int, ipv4: str, allowed: str,
                        on_lan: NsListeners) -> None:
    """The guest takes another VM's address, then another MAC, and calls the allowed server
    each time; only its calls with its own addresses may arrive."""
    mac = key.run(host.address, port, "cat /sys/class/net/eth0/address").strip()
    script = SPOOF.format(allowed=allowed, gw="172.30.0.1", ipv4=ipv4, mac=mac,
                          other_ip="172.30.0.77/24", other_mac="52:54:00:00:00:77")
    key.run(host.address, port, f"cat > /tmp/spoof.sh <<'EOF'\n{script}EOF\n"
                                "setsid sh /tmp/spoof.sh > /tmp/spoof.out 2>&1 < /dev/null &")
    out = ""
    for attempt in Retrying(stop=stop_after_delay(120), wait=wait_fixed(3), reraise=True,
                            retry=retry_if_exception_type((ConnectionError, AssertionError,
                                                           subprocess.TimeoutExpired))):
        with attempt:
            out = key.run(host.address, port, "cat /tmp/spoof.out", timeout=30)
            assert "finished" in out
    lines = dict(line.split(" => ", 1) for line in out.splitlines() if " => " in line)
    assert "rc=0" in lines["before"] and "rc=0" in lines["after"], out
    assert "LISTENER" not in lines["spoofed-ip"] and "LISTENER" not in lines["spoofed-mac"], out
    paths = [h.split()[2] for h in on_lan.hits()]
    assert "/before" in paths and "/after" in paths
    assert "/spoofed-ip" not in paths and "/spoofed-mac" not in paths, paths
    drops = [line for line in host.exec("nft", "list", "table", "bridge",
                                        "slices_slicesbr0").splitlines()
             if "counter packets" in line and "drop" in line and "iifname \"sbt" in line]
    dropped = sum(int(line.split("counter packets ")[1].split()[0]) for line in drops)
    assert dropped > 0, "\n".join(drops)
