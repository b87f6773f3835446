"""Bridged networking for sandboxes: the host side (seed 004's network section).

Each VM gets a TAP device (``cbt`` + 11 characters of its id) enslaved to the bridge of
``config.yaml``'s ``networking.bridge_name`` (``mcp-br0``), which holds the gateway, the
first address of ``networking.subnet``.  The TAP's bridge port is *isolated*: frames from
one isolated port never reach another, so sandboxes cannot talk to each other, only to the
gateway (and, through NAT, beyond).  nftables does the rest, in a table of its own
(``inet cargobay``), replaced as a whole each time (``nft -j -f -`` with JSON, never
parsing ``nft`` text):

    postrouting  masquerade what leaves the subnet for elsewhere (NAT to the outside)
    prerouting   DNAT of each port forward ``HOST:GUEST[/udp]`` to the guest's address
    output       the same for connections from the host itself (with route_localnet, so
                 127.0.0.1:HOST works), masqueraded so the guest's reply comes back

Links are made and found through netlink (pyroute2), never by parsing ``ip``; its
synchronous API runs an event loop of its own, so async callers use ``asyncio.to_thread``.
``HostNetwork`` takes ``netns``: the tests do all of this inside a network namespace they
create.  The guest side (address, route, DNS) is a list of commands the agent runs
(``guest_commands``): the guest image is not involved.

The machines service uses it for ``network: bridge`` (``machines.network_service``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute, NetNS  # type: ignore[import-untyped]

from cargobay.errors import HypervisorError, InvalidInput

__all__ = [
    "Forward",
    "HostNetwork",
    "gateway_of",
    "guest_commands",
    "mac_for",
    "nat_ruleset",
    "pick_address",
    "tap_name",
]

TABLE = "cargobay"


@dataclass(frozen=True, slots=True)
class Forward:
    protocol: str
    host_port: int
    guest: str
    guest_port: int


def tap_name(vm_id: str) -> str:
    return f"cbt{vm_id[:11]}"


def mac_for(vm_id: str) -> str:
    """A stable, locally administered MAC for the VM's NIC."""
    digest = hashlib.sha256(vm_id.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _network(subnet: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as err:
        raise InvalidInput(f"networking.subnet: {err}") from err
    if not isinstance(net, ipaddress.IPv4Network) or net.num_addresses < 4:
        raise InvalidInput(f"networking.subnet: {subnet} must be an IPv4 network of /30 or larger")
    return net


def gateway_of(subnet: str) -> ipaddress.IPv4Interface:
    net = _network(subnet)
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")


def pick_address(subnet: str, used: Iterable[str]) -> ipaddress.IPv4Interface:
    """The lowest free address of ``subnet`` (not the gateway, not one in ``used``)."""
    net = _network(subnet)
    taken = {ipaddress.ip_address(a.split("/")[0]) for a in used}
    taken.add(gateway_of(subnet).ip)
    for host in net.hosts():
        if host not in taken:
            return ipaddress.IPv4Interface(f"{host}/{net.prefixlen}")
    raise InvalidInput(f"networking.subnet {subnet} has no free address left")


def nat_ruleset(subnet: str, forwards: Sequence[Forward]) -> dict[str, Any]:
    """The whole ``inet cargobay`` table as nftables JSON (flushed and rebuilt)."""
    net = str(_network(subnet))
    prefix = {"prefix": {"addr": net.split("/")[0], "len": int(net.split("/")[1])}}
    base = {"family": "inet", "table": TABLE}

    def chain(name: str, hook: str, priority: int) -> dict[str, Any]:
        return {
            "chain": {**base, "name": name, "type": "nat", "hook": hook, "prio": priority,
                      "policy": "accept"}
        }  # fmt: skip

    def rule(chain_name: str, *expr: dict[str, Any]) -> dict[str, Any]:
        return {"add": {"rule": {**base, "chain": chain_name, "expr": list(expr)}}}

    def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
        return {"match": {"op": op, "left": left, "right": right}}

    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
    commands: list[dict[str, Any]] = [
        {"add": {"table": base | {"name": TABLE}}},
        {"delete": {"table": base | {"name": TABLE}}},
        {"add": {"table": base | {"name": TABLE}}},
        {"add": chain("postrouting", "postrouting", 100)},
        {"add": chain("prerouting", "prerouting", -100)},
        {"add": chain("output", "output", -100)},
        rule("postrouting", match(saddr, prefix), match(daddr, prefix, "!="), {"masquerade": None}),
        # Host-originated connections DNATed to a guest leave from 127.0.0.1 or the host's
        # own address: masquerade them on the bridge so the reply comes back to us.
        rule(
            "postrouting",
            match(saddr, prefix, "!="),
            match(daddr, prefix),
            match({"ct": {"key": "status"}}, "dnat", "in"),
            {"masquerade": None},
        ),
    ]
    for fwd in forwards:
        if fwd.protocol not in ("tcp", "udp"):
            raise InvalidInput(f"bad protocol {fwd.protocol!r} for a port forward")
        for chain_name in ("prerouting", "output"):
            commands.append(
                rule(
                    chain_name,
                    match({"fib": {"flags": ["daddr"], "result": "type"}}, "local"),
                    match({"payload": {"protocol": fwd.protocol, "field": "dport"}}, fwd.host_port),
                    {"dnat": {"family": "ip", "addr": fwd.guest, "port": fwd.guest_port}},
                )
            )
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]}


def guest_commands(
    address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Interface, dns: Sequence[str]
) -> list[list[str]]:
    """What the agent runs in the guest (busybox ``ip``): address, route, resolv.conf."""
    resolv = "".join(f"nameserver {server}\n" for server in dns)
    return [
        ["busybox", "ip", "link", "set", "eth0", "up"],
        ["busybox", "ip", "addr", "add", str(address), "dev", "eth0"],
        ["busybox", "ip", "route", "add", "default", "via", str(gateway.ip)],
        ["sh", "-c", 'printf %s "$1" > /etc/resolv.conf', "sh", resolv],
    ]


class HostNetwork:
    """The host side in the current network namespace, or in ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _ipr(self) -> IPRoute | NetNS:
        return NetNS(self.netns) if self.netns else IPRoute()

    def ensure_bridge(self, name: str, gateway: ipaddress.IPv4Interface) -> None:
        with self._ipr() as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                ipr.link("add", ifname=name, kind="bridge")
                found = ipr.link_lookup(ifname=name)
            index = found[0]
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)}
            if str(gateway.ip) not in have:
                ipr.addr(
                    "add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
                )
            ipr.link("set", index=index, state="up")
        self._sysctl("net/ipv4/ip_forward", "1")
        self._sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")

    def add_tap(self, tap: str, bridge: str, *, isolated: bool = True) -> None:
        with self._ipr() as ipr:
            if ipr.link_lookup(ifname=tap):
                raise HypervisorError(f"a network device named {tap} already exists")
            ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
            index = ipr.link_lookup(ifname=tap)[0]
            master = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("set", index=index, master=master, state="up")
            if isolated:
                ipr.brport("set", index=index, isolated=1)

    def remove_link(self, name: str) -> None:
        with self._ipr() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)

    def links(self) -> list[str]:
        with self._ipr() as ipr:
            return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]

    def apply_rules(self, ruleset: dict[str, Any]) -> None:
        self._run(["nft", "-j", "-f", "-"], json.dumps(ruleset))

    def remove_rules(self) -> None:
        table = {"table": {"family": "inet", "name": TABLE}}
        self._run(
            ["nft", "-j", "-f", "-"], json.dumps({"nftables": [{"add": table}, {"delete": table}]})
        )

    def _sysctl(self, key: str, value: str) -> None:
        self._run(["sh", "-c", f"echo {value} > /proc/sys/{key}"], None)

    def _run(self, argv: list[str], stdin: str | None) -> None:
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        except FileNotFoundError as err:
            raise HypervisorError(f"cannot run {argv[0]}: install it (Debian: nftables)") from err
        if done.returncode != 0:
            raise HypervisorError(f"{' '.join(argv[:4])} failed: {done.stderr.strip()}")
