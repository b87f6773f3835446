"""Bridged networking with real QEMU, inside a network namespace this test creates.

Two VMs (the default image) on a bridge in namespace ``cbnet-XXXX``, each on an isolated
TAP port, addressed from the subnet through the guest agent; nftables NAT and port
forwards in the namespace.  Checked, talking only to addresses inside that namespace and
its loopback: a guest reaches the gateway; a TCP and a UDP port forward reach a server in
the guest from the namespace's own address and from its 127.0.0.1; the second guest cannot
reach the first (isolated bridge ports); afterwards no TAP and no nftables table is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from cargobay.hypervisors.base import VMHandle, VMSpec
from cargobay.hypervisors.qemu import QemuHypervisor
from cargobay.images import ImageManifest, ImageStore
from cargobay.machines.agent import (
    AgentClientLike,
    ExecExit,
    ExecOutput,
    ExecRequest,
    GuestAgentConnector,
    exec_events,
)
from cargobay.machines.models import VMInstance, parse_port
from cargobay.machines.network import (
    Forward,
    HostNetwork,
    gateway_of,
    guest_commands,
    mac_for,
    nat_ruleset,
    pick_address,
    tap_name,
)
from cargobay.machines.network_service import with_network
from cargobay.machines.service import MachineService, _require_handle
from cargobay.paths import Paths
from cargobay.store import Store
from tests.integration.machines.variants import image_store_with_variants, shared_cache_dir
from tests.support import require, require_binary

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

SUBNET = "172.30.9.0/24"
BRIDGE = "cbbr0"


@dataclass
class Guest:
    spec: VMSpec
    handle: VMHandle
    agent: AgentClientLike
    address: str


@dataclass
class Net:
    ns: str
    host: HostNetwork
    guests: list[Guest]


def sh(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, capture_output=True)


def in_ns(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


async def guest_run(agent: AgentClientLike, argv: list[str]) -> tuple[int, str]:
    out, code = b"", -1
    async for event in exec_events(agent, ExecRequest(argv=argv, timeout=30)):
        if isinstance(event, ExecOutput):
            out += event.data
        elif isinstance(event, ExecExit):
            code = event.exit_code if event.exit_code is not None else -1
    return code, out.decode(errors="replace")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(default_image: tuple[Path, ImageManifest]) -> AsyncIterator[Net]:
    require(os.geteuid() == 0, "bridged networking needs root (network namespaces, TAP)")
    require_binary("nft", "apt-get install nftables")
    require_binary("ip", "apt-get install iproute2")
    ns = f"cbnet-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", ns)
    home = Path(tempfile.mkdtemp(prefix="cbn-", dir="/tmp"))
    wrapper = home / "qemu-in-ns"
    qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {qemu} "$@"\n')
    wrapper.chmod(0o755)
    paths = Paths(home / "data", home / "state", shared_cache_dir(), home / "run", home / "img")
    paths.ensure()
    hv = QemuHypervisor(qemu_binary=str(wrapper), paths=paths)
    host = HostNetwork(ns)
    gateway = gateway_of(SUBNET)
    guests: list[Guest] = []
    image_dir, manifest = default_image
    try:
        in_ns(ns, "ip", "link", "set", "lo", "up")
        await asyncio.to_thread(host.ensure_bridge, BRIDGE, gateway)
        specs = []
        used: list[str] = []
        for n in range(2):
            vm_id = uuid.uuid4().hex
            address = pick_address(SUBNET, used)
            used.append(str(address))
            await asyncio.to_thread(host.add_tap, tap_name(vm_id), BRIDGE)
            disk = home / f"disk{n}.img"
            sh("truncate", "-s", "64M", str(disk))
            sh("mkfs.ext4", "-q", "-L", "cbdata", str(disk))
            spec = VMSpec(
                vm_id=vm_id, name=f"net{n}", cpus=1, memory_mb=256,
                kernel=image_dir / manifest.kernel.path,
                initrd=image_dir / manifest.initrd.path if manifest.initrd else None,
                rootfs=image_dir / manifest.rootfs.path, data_disk=disk,
                run_dir=home / "run" / vm_id[:8], state_dir=home / "state" / vm_id[:8],
                cmdline=manifest.cmdline,
                extra={"tap": tap_name(vm_id), "mac": mac_for(vm_id)},
            )  # fmt: skip
            specs.append((spec, address))
        handles = await asyncio.gather(*(hv.start(spec) for spec, _ in specs))
        connector = GuestAgentConnector()
        agents = await asyncio.gather(
            *(connector.wait_ready(h.agent_address, 180) for h in handles)
        )
        for (spec, address), handle, agent in zip(specs, handles, agents, strict=True):
            for argv in guest_commands(address, gateway, ["172.30.9.1"]):
                code, out = await guest_run(agent, argv)
                assert code == 0, (argv, out)
            guests.append(Guest(spec, handle, agent, str(address.ip)))
        first = guests[0].address
        forwards = [Forward("tcp", 18080, first, 8000), Forward("udp", 15353, first, 5353)]
        await asyncio.to_thread(host.apply_rules, nat_ruleset(SUBNET, forwards))
        yield Net(ns, host, guests)
    finally:
        for guest in guests:
            with contextlib.suppress(Exception):
                await guest.agent.close()
        for guest in guests:
            with contextlib.suppress(Exception):
                await hv.kill(guest.handle)
        sh("pkill", "-9", "-f", str(home), check=False)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(host.remove_rules)
        sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(home, ignore_errors=True)


SERVERS = (
    "cd /tmp && setsid python3 -m http.server 8000 >/dev/null 2>&1 < /dev/null & "
    "setsid python3 -c 'import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    's.bind(("0.0.0.0", 5353))\n'
    "while True:\n"
    "    d, a = s.recvfrom(100)\n"
    '    s.sendto(b"echo:" + d, a)\' >/dev/null 2>&1 < /dev/null & sleep 1.5'
)

CLIENT = """
import socket, sys, time, urllib.request
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 30  # the guest's server may still be starting (TCG)
while True:
    try:
        if proto == "tcp":
            print(urllib.request.urlopen(f"http://{host}:{port}/", timeout=10).status)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.sendto(b"ping", (host, port))
            print(s.recvfrom(100)[0].decode())
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
"""


async def test_guest_reaches_the_gateway_and_forwards_work(net: Net) -> None:
    first = net.guests[0]
    code, out = await guest_run(first.agent, ["sh", "-c", SERVERS])
    assert code == 0, out
    code, out = await guest_run(
        first.agent,
        ["python3", "-c", "import socket; socket.create_connection(('172.30.9.1', 9), 3)"],
    )
    # Nothing listens on the gateway's port 9: a refusal (not a timeout) proves it answered.
    assert "ConnectionRefusedError" in out, out
    for target, port, proto, want in (
        (first.address, "8000", "tcp", "200"),
        ("172.30.9.1", "18080", "tcp", "200"),
        ("127.0.0.1", "18080", "tcp", "200"),
        ("127.0.0.1", "15353", "udp", "echo:ping"),
        ("172.30.9.1", "15353", "udp", "echo:ping"),
    ):
        client = ("python3", "-c", CLIENT, target, port, proto)
        done = await asyncio.to_thread(in_ns, net.ns, *client, timeout=60)
        assert done.stdout.strip() == want, (target, port, proto, done.stderr[-500:])


async def test_sandboxes_cannot_reach_each_other(net: Net) -> None:
    first, second = net.guests
    probe = f"import socket; socket.create_connection(('{first.address}', 8000), 3)"
    code, out = await guest_run(second.agent, ["python3", "-c", probe])
    assert code != 0
    # Isolated bridge ports: ARP gets no answer (no route to host) or the SYN none.
    assert any(w in out.lower() for w in ("timed out", "unreachable", "no route to host")), out
    # ...while the second guest does reach the gateway.
    code, out = await guest_run(
        second.agent,
        ["python3", "-c", "import socket; socket.create_connection(('172.30.9.1', 9), 3)"],
    )
    assert "ConnectionRefusedError" in out, out


async def test_everything_is_removed(net: Net) -> None:
    taps = [tap_name(g.spec.vm_id) for g in net.guests]
    assert set(taps) <= set(await asyncio.to_thread(net.host.links))
    for tap in taps:
        await asyncio.to_thread(net.host.remove_link, tap)
    await asyncio.to_thread(net.host.remove_rules)
    assert not set(taps) & set(await asyncio.to_thread(net.host.links))
    listed = await asyncio.to_thread(in_ns, net.ns, "nft", "-j", "list", "tables")
    assert '"name": "cargobay"' not in listed.stdout
    net.guests.clear()


async def test_a_bridged_machine_through_the_service(
    net: Net, default_image: tuple[Path, ImageManifest]
) -> None:
    """``network: bridge`` end to end in the machines service: address picked and kept,
    TAP and forward made at start, the guest configured through the agent, all removed at
    stop."""
    home = Path(tempfile.mkdtemp(prefix="cbs-", dir="/tmp"))
    images = image_store_with_variants(home / "images", default_image[0])
    paths = Paths(home / "data", home / "state", shared_cache_dir(), home / "run", images)
    paths.ensure()
    store = Store.open(paths.db)
    wrapper = home / "qemu-in-ns"
    qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {net.ns} {qemu} "$@"\n')
    wrapper.chmod(0o755)
    service = MachineService(
        paths,
        store,
        lambda _name: QemuHypervisor(qemu_binary=str(wrapper), paths=paths),
        ImageStore(paths.images),
        GuestAgentConnector(),
    )
    service.host_network = HostNetwork(net.ns)
    try:
        vm = VMInstance(name="bridged")
        config = vm.config.model_copy(
            update={"memory_mb": 256, "ports": (parse_port("18090:8000"),)}
        )
        vm = with_network(vm.model_copy(update={"config": config}), "bridge")
        assert vm.config.network == "bridge"
        vm = await service.create(vm, boot_timeout=180)
        assert vm.config.net_address == "172.16.0.2/24"
        agent = await service._agent(vm, _require_handle(vm))
        serve = (
            "busybox ip addr show eth0; cd /tmp && setsid python3 -m http.server 8000 "
            ">/dev/null 2>&1 </dev/null &"
        )
        _, out = await guest_run(agent, ["sh", "-c", serve])
        assert "172.16.0.2/24" in out, out
        done = await asyncio.to_thread(
            in_ns, net.ns, "python3", "-c", CLIENT, "127.0.0.1", "18090", "tcp"
        )
        assert done.stdout.strip() == "200", done.stderr[-500:]
        await service.stop("bridged", force=True)
        assert tap_name(vm.id) not in await asyncio.to_thread(net.host.links)
        rules = await asyncio.to_thread(
            in_ns, net.ns, "nft", "-j", "list", "table", "inet", "cargobay"
        )
        assert '"dnat": {' not in rules.stdout  # no forward left (ct status dnat stays)
        assert service.get_machine("bridged").config.net_address == "172.16.0.2/24"  # kept
    finally:
        for machine in store.list_machines():
            with contextlib.suppress(Exception):
                await service.delete(machine.name, force=True)
        await service.close()
        store.close()
        sh("pkill", "-9", "-f", str(home), check=False)
        shutil.rmtree(home, ignore_errors=True)
