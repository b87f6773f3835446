"""Bridged networking for machines (``network: bridge``), on top of ``machines.network``.

``attach`` runs before QEMU starts: the bridge of ``config.yaml``'s ``networking`` section
(created with the gateway address if missing), the machine's address (kept on the machine
once picked; the lowest free one of the subnet), its TAP device, and the nftables table
rebuilt for every bridged machine that is up (masquerade + its port forwards).
``configure_guest`` runs once the agent answers: address, default route, resolv.conf.
``detach`` runs whenever the VM process is gone (stop, crash, failed boot, delete): the
TAP goes and the rules are rebuilt without the machine.  The bridge stays (other machines
may use it, and it costs nothing).

Bridge mode needs root (TAP devices, nftables); a machine asking for it from a daemon
that is not root runs with user-mode networking, and its ``network_note`` says why.
``MachineService.host_network`` picks the namespace (the tests use one of their own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
from typing import TYPE_CHECKING

from cargobay.config import load_config
from cargobay.errors import GuestError, InvalidInput
from cargobay.hypervisors.base import VMSpec
from cargobay.machines.agent import AgentClientLike
from cargobay.machines.app_service import agent_runner
from cargobay.machines.models import VMInstance, VMStateKind
from cargobay.machines.network import (
    Forward,
    gateway_of,
    guest_commands,
    mac_for,
    nat_ruleset,
    pick_address,
    tap_name,
)

if TYPE_CHECKING:
    from cargobay.machines.service import MachineService

__all__ = ["attach", "bridge_or_note", "configure_guest", "detach", "with_network"]

_UP = (VMStateKind.CREATING, VMStateKind.RUNNING, VMStateKind.PAUSED)


def with_network(vm: VMInstance, mode: str) -> VMInstance:
    """``vm`` with network ``mode`` (``user``, ``bridge`` or ``none``), or user-mode with a
    note when bridge mode is not possible here."""
    if mode not in ("user", "bridge", "none"):
        raise InvalidInput(f"bad network {mode!r}: use user, bridge or none")
    if mode == "none" and vm.config.ports:
        raise InvalidInput("network none has no NIC: it cannot forward --ports")
    mode, note = bridge_or_note(mode)
    update = {"network": mode, "network_note": note}
    return vm.model_copy(update={"config": vm.config.model_copy(update=update)})


def bridge_or_note(mode: str) -> tuple[str, str | None]:
    """The mode a machine gets, and a note when bridge mode is not possible here."""
    if mode == "bridge" and os.geteuid() != 0:
        return "user", (
            "bridged networking needs the daemon to run as root (TAP devices, nftables); "
            "this machine uses user-mode networking (--ports through QEMU) instead"
        )
    return mode, None


def _forwards(vm: VMInstance) -> list[Forward]:
    address = (vm.config.net_address or "").split("/")[0]
    return [Forward(p.protocol, p.host, address, p.guest) for p in vm.config.ports]


async def _rules(
    service: MachineService, subnet: str, *, include: VMInstance | None = None, exclude: str = ""
) -> None:
    """Rebuild the nftables table for every bridged machine that is up (plus ``include``,
    which is starting; minus ``exclude``, which is going)."""
    skip = {exclude, include.id if include is not None else ""}
    bridged = [
        vm
        for vm in service.store.list_machines()
        if vm.config.network == "bridge" and vm.config.net_address and vm.state.kind in _UP
        and vm.id not in skip
    ]  # fmt: skip
    if include is not None:
        bridged.append(include)
    forwards = [f for vm in bridged for f in _forwards(vm)]
    await asyncio.to_thread(service.host_network.apply_rules, nat_ruleset(subnet, forwards))


async def attach(
    service: MachineService, vm: VMInstance, spec: VMSpec
) -> tuple[VMInstance, VMSpec]:
    if vm.config.network != "bridge":
        return vm, spec
    net = load_config(service.paths.config_file).networking
    if not vm.config.net_address:
        used = [
            m.config.net_address
            for m in service.store.list_machines()
            if m.config.net_address and m.id != vm.id
        ]
        address = pick_address(net.subnet, used)
        vm = vm.model_copy(
            update={"config": vm.config.model_copy(update={"net_address": str(address)})}
        )
        vm = service.store.save_machine(vm)
    host = service.host_network
    tap = tap_name(vm.id)
    await asyncio.to_thread(host.ensure_bridge, net.bridge_name, gateway_of(net.subnet))
    await asyncio.to_thread(host.remove_link, tap)  # a TAP a crash left behind
    await asyncio.to_thread(host.add_tap, tap, net.bridge_name)
    await _rules(service, net.subnet, include=vm)
    extra = {k: v for k, v in spec.extra.items() if k != "ports"}
    extra.update({"tap": tap, "mac": mac_for(vm.id)})
    return vm, dataclasses.replace(spec, extra=extra)


async def configure_guest(service: MachineService, agent: AgentClientLike, vm: VMInstance) -> None:
    if vm.config.network != "bridge" or not vm.config.net_address:
        return
    net = load_config(service.paths.config_file).networking
    run = agent_runner(agent)
    address = ipaddress.IPv4Interface(vm.config.net_address)
    for argv in guest_commands(address, gateway_of(net.subnet), net.dns_servers):
        code, out = await run(argv)
        if code != 0 and "File exists" not in out:
            raise GuestError(f"could not configure the guest's network ({argv[1:4]}): {out}")


async def detach(service: MachineService, vm: VMInstance) -> None:
    if vm.config.network != "bridge":
        return
    net = load_config(service.paths.config_file).networking
    await asyncio.to_thread(service.host_network.remove_link, tap_name(vm.id))
    await _rules(service, net.subnet, exclude=vm.id)
