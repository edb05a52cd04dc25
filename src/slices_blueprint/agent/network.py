"""Host networking for bridged VMs, with netlink (pyroute2) and one nftables table.

- a bridge holding the subnet's first address (the guests' gateway);
- one TAP per running VM, enslaved to the bridge, named from the VM id (``sbt…``);
- the table ``ip slices_<bridge>``: masquerade for the subnet's egress and one DNAT per VM
  from ``host:ssh_port`` to ``guest:22``; and the guests' confinement: nothing addressed to
  the host itself (the agent, the service, any local address) is accepted from the bridge
  but replies, and nothing is forwarded from it to a non-public destination (private,
  link-local such as 169.254.169.254, loopback, shared, reserved, multicast) unless it is
  in ``guest_allowed_networks``; public addresses are NAT'd out; a VM's guest services (see
  ``protocol.GuestService``) are one DNAT each, from that VM's address to the service's
  guest-side address and port, to its target, accepted for that VM and that target only;
- the table ``bridge slices_<bridge>``: anti-spoofing per TAP: frames from a VM's TAP must
  carry its MAC, and its IPv4 address in IPv4 and ARP; anything else (IPv6, other
  ethertypes, a TAP of no running VM) is dropped before the bridge learns or forwards it.
Both tables are rewritten whole, atomically, from the VM records on every change, so rules
are idempotent and a deleted VM leaves none behind.

Nothing here touches the uplink: egress NAT is a rule on our own table, optionally limited
to ``egress_interface``; ``net.ipv4.ip_forward`` is set only with ``manage_ip_forward``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from slices_blueprint.agent.config import AgentSettings

log = structlog.get_logger(__name__)

TAP_PREFIX = "sbt"
# IPv4 blocks that are not globally reachable (IANA special-purpose registry): a guest may
# reach them only where the operator allowed it (``guest_allowed_networks``).
NON_PUBLIC_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)
USER_MODE_GUEST = ("10.0.2.15/24", "10.0.2.2", "10.0.2.3")  # QEMU slirp: address, gw, dns


def tap_name(vm_id: str) -> str:
    return TAP_PREFIX + hashlib.sha256(vm_id.encode()).hexdigest()[:11]


def mac_for(ipv4: str, vm_id: str) -> str:
    """A locally administered MAC, unique per host (from the address) and per VM id."""
    digest = hashlib.sha256(f"{vm_id}/{ipv4}".encode()).digest()
    return "52:54:" + ":".join(f"{b:02x}" for b in digest[:4])


@dataclass(frozen=True)
class ServicePath:
    """A guest service: connections of the VM to ``address:port`` go to ``target:target_port``
    (an IPv4 address that is not loopback: DNAT cannot reach the host's loopback)."""

    address: str
    port: int
    target: str
    target_port: int


@dataclass(frozen=True)
class Forward:
    """A running VM as the rules see it: its SSH forward, the addresses its TAP may use and
    the paths to its guest services."""

    vm_id: str
    host_port: int
    guest_ipv4: str  # without prefix
    tap: str
    mac: str
    services: tuple[ServicePath, ...] = ()


def bridgeable(target: str) -> bool:
    """Whether a guest service's target can be DNAT'ed to from the bridge."""
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return False
    return address.version == 4 and not address.is_loopback and not address.is_unspecified


class BridgeNetwork:
    """The bridge, TAPs and NAT table for one agent."""

    def __init__(self, settings: AgentSettings) -> None:
        self.bridge = settings.bridge
        self.subnet = settings.subnet
        self.gateway = next(self.subnet.hosts())
        self.dns = settings.dns
        self.egress_interface = settings.egress_interface
        self.manage_ip_forward = settings.manage_ip_forward
        self.allowed = settings.guest_allowed_networks
        self.table = f"slices_{self.bridge}".replace("-", "_")

    # addresses -----------------------------------------------------------------------------
    def allocate(self, in_use: Iterable[str]) -> str:
        """The lowest free guest address (with prefix); never one a record still holds."""
        taken = {ipaddress.IPv4Interface(a).ip for a in in_use} | {self.gateway}
        for ip in self.subnet.hosts():
            if ip not in taken:
                return f"{ip}/{self.subnet.prefixlen}"
        raise LookupError(f"subnet {self.subnet} has no free address")

    def guest_config(self, ipv4: str) -> tuple[str, str, str]:
        return ipv4, str(self.gateway), self.dns

    # links ---------------------------------------------------------------------------------
    def ensure_host(self) -> None:
        """Create the bridge with the gateway address, up; idempotent."""
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=self.bridge):
                ipr.link("add", ifname=self.bridge, kind="bridge")
            (index,) = ipr.link_lookup(ifname=self.bridge)
            addresses = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)}
            if str(self.gateway) not in addresses:
                ipr.addr("add", index=index, address=str(self.gateway),
                         prefixlen=self.subnet.prefixlen)
            ipr.link("set", index=index, state="up")
        if self.manage_ip_forward:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        log.info("agent.bridge_ready", bridge=self.bridge, subnet=str(self.subnet))

    def ensure_tap(self, vm_id: str, owner: tuple[int, int] | None = None) -> str:
        """The VM's TAP, on the bridge and up; idempotent. ``owner`` (uid, gid) may attach to
        it without privileges (a jailed VMM)."""
        name = tap_name(vm_id)
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=name):
                owned = {"uid": owner[0], "gid": owner[1]} if owner else {}
                ipr.link("add", ifname=name, kind="tuntap", mode="tap", **owned)
            (bridge,) = ipr.link_lookup(ifname=self.bridge)
            (index,) = ipr.link_lookup(ifname=name)
            ipr.link("set", index=index, master=bridge, state="up")
        return name

    def remove_tap(self, name: str) -> None:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=index)
                except NetlinkError as exc:
                    if exc.code != 19:  # ENODEV: already gone
                        raise

    def taps(self) -> list[str]:
        with IPRoute() as ipr:
            names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
        return [n for n in names if n and n.startswith(TAP_PREFIX)]

    def tap_counters(self, name: str) -> dict[str, int]:
        stats = Path(f"/sys/class/net/{name}/statistics")
        try:
            return {k: int((stats / k).read_text()) for k in ("rx_bytes", "tx_bytes",
                                                             "rx_packets", "tx_packets")}
        except FileNotFoundError:
            return {}

    # rules -------------------------------------------------------------------------------
    def ruleset(self, forwards: Iterable[Forward]) -> str:
        """Both tables, each deleted and recreated in the same transaction."""
        forwards = sorted(forwards, key=lambda f: f.host_port)
        return self._ip_table(forwards) + self._bridge_table(forwards)

    def _ip_table(self, forwards: list[Forward]) -> str:
        egress = f'oifname "{self.egress_interface}" ' if self.egress_interface else ""
        dnat = "".join(
            f"    fib daddr type local tcp dport {f.host_port} dnat to {f.guest_ipv4}:22 "
            f'comment "vm:{f.vm_id}"\n'
            for f in forwards
        )
        br = f'iifname "{self.bridge}"'
        paths = [(f, p) for f in forwards for p in f.services]
        service_dnat = "".join(
            f"    {br} ip saddr {f.guest_ipv4} ip daddr {p.address} tcp dport {p.port} "
            f'dnat to {p.target}:{p.target_port} comment "vm:{f.vm_id} service"\n'
            for f, p in paths
        )
        service_accept = "".join(
            f"    {br} ip saddr {f.guest_ipv4} ip daddr {p.target} tcp dport {p.target_port} "
            f'ct status dnat accept comment "vm:{f.vm_id} service"\n'
            for f, p in paths
        )
        allowed = (f"    {br} ip daddr {{ {', '.join(map(str, self.allowed))} }} accept\n"
                   if self.allowed else "")
        return (
            f"table ip {self.table}\ndelete table ip {self.table}\n"
            f"table ip {self.table} {{\n"
            "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
            f"{service_dnat}{dnat}  }}\n"
            "  chain output {\n    type nat hook output priority -100; policy accept;\n"
            f"{dnat}  }}\n"
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    ip saddr {self.subnet} ip daddr != {self.subnet} {egress}masquerade\n  }}\n"
            "  chain guest_to_host {\n    type filter hook input priority filter; policy accept;\n"
            f"    {br} ct state established,related accept\n{service_accept}"
            f'    {br} counter drop comment "guests reach nothing on the host"\n  }}\n'
            "  chain guest_forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            f"    {br} ct state established,related accept\n{service_accept}{allowed}"
            f"    {br} ip daddr {{ {', '.join(NON_PUBLIC_V4)} }} counter drop "
            'comment "guests reach public addresses only"\n  }\n'
            "}\n"
        )

    def _bridge_table(self, forwards: list[Forward]) -> str:
        rules = "".join(
            f'    iifname "{f.tap}" ether saddr != {f.mac} counter drop\n'
            f'    iifname "{f.tap}" ether type ip ip saddr != {f.guest_ipv4} counter drop\n'
            f'    iifname "{f.tap}" ether type arp arp saddr ether != {f.mac} counter drop\n'
            f'    iifname "{f.tap}" ether type arp arp saddr ip != {f.guest_ipv4} counter drop\n'
            f'    iifname "{f.tap}" ether type {{ ip, arp }} accept\n'
            for f in forwards
        )
        return (
            f"table bridge {self.table}\ndelete table bridge {self.table}\n"
            f"table bridge {self.table} {{\n"
            "  chain guest_ingress {\n"
            "    type filter hook prerouting priority -200; policy accept;\n"
            f'{rules}    iifname "{TAP_PREFIX}*" counter drop '
            'comment "spoofed, not IPv4/ARP, or no running VM"\n  }\n'
            "}\n"
        )

    async def sync_rules(self, forwards: Iterable[Forward]) -> None:
        """Make both tables exactly the rules for these running VMs (atomic)."""
        await _nft(self.ruleset(forwards))


async def _nft(script: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "nft", "-f", "-", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"nft failed: {err.decode(errors='replace').strip()}")
