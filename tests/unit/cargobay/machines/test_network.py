"""The pure parts of bridged networking: names, addresses, the nftables ruleset."""

from __future__ import annotations

import ipaddress
import re

import pytest

from cargobay.errors import InvalidInput
from cargobay.machines.network import (
    Forward,
    gateway_of,
    guest_commands,
    mac_for,
    nat_ruleset,
    pick_address,
    tap_name,
)


def test_names() -> None:
    vm_id = "0123456789abcdef0123"
    assert tap_name(vm_id) == "cbt0123456789a"
    assert len(tap_name(vm_id)) <= 15  # IFNAMSIZ - 1
    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac_for(vm_id))
    assert mac_for(vm_id) == mac_for(vm_id) != mac_for("other")


def test_addresses() -> None:
    assert str(gateway_of("172.16.0.0/24")) == "172.16.0.1/24"
    assert str(pick_address("172.16.0.0/24", [])) == "172.16.0.2/24"
    assert str(pick_address("172.16.0.0/24", ["172.16.0.2/24", "172.16.0.3"])) == "172.16.0.4/24"
    with pytest.raises(InvalidInput, match="no free address"):
        pick_address("10.0.0.0/30", ["10.0.0.2"])
    with pytest.raises(InvalidInput, match=r"networking\.subnet"):
        pick_address("10.0.0.1/24", [])  # host bits set


def test_ruleset() -> None:
    rules = nat_ruleset(
        "172.16.0.0/24",
        [Forward("tcp", 8080, "172.16.0.2", 80), Forward("udp", 53, "172.16.0.2", 53)],
    )["nftables"]
    chains = [c["add"]["chain"] for c in rules if "chain" in c.get("add", {})]
    assert {(c["name"], c["hook"]) for c in chains} == {
        ("postrouting", "postrouting"),
        ("prerouting", "prerouting"),
        ("output", "output"),
    }
    dnats = [r["add"]["rule"] for r in rules if "rule" in r.get("add", {}) and
             any("dnat" in e for e in r["add"]["rule"]["expr"])]  # fmt: skip
    assert len(dnats) == 4  # each forward in prerouting and output
    assert {e["dnat"]["port"] for r in dnats for e in r["expr"] if "dnat" in e} == {80, 53}
    with pytest.raises(InvalidInput):
        nat_ruleset("172.16.0.0/24", [Forward("sctp", 1, "172.16.0.2", 1)])


def test_guest_commands() -> None:
    address = ipaddress.IPv4Interface("172.16.0.2/24")
    cmds = guest_commands(address, gateway_of("172.16.0.0/24"), ["172.16.0.1"])
    assert ["busybox", "ip", "addr", "add", "172.16.0.2/24", "dev", "eth0"] in cmds
    assert cmds[-1][-1] == "nameserver 172.16.0.1\n"
