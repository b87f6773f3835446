"""Scenario VMs on libvirt hosts of the pool, and the provider that routes each VM.

``LibvirtProvider`` boots a VM whose ``host:`` names a pool host: the image goes to the
host's ``cargobay`` storage pool (uploaded once per content, over the libvirt
connection, so remote hosts work the same way), a transient domain starts from it, and
the runner gets QMP and QGA through libvirt (``qemuMonitorCommand`` /
``qemuAgentCommand``), recorded like the local ones.  The serial console comes back over
a libvirt stream into a local file, so ``wait_for: console`` works on remote hosts too.

``RoutingProvider`` sends VMs without ``host:`` to the local QEMU provider and the others
here; hosts come from the scenario's ``hosts:`` section, or from the daemon's pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargobay.errors import NotFound
from cargobay.images import ImageStore
from cargobay.paths import Paths
from cargobay.scenarios.provider import BootedVM, VMProvider
from cargobay.scenarios.schema import VMDef
from cargobay.scenarios.traffic import RecordingLibvirtQga, RecordingLibvirtQmp, TrafficLog
from cargobay.vmcontrol.config import HostInfo
from cargobay.vmcontrol.domains import SpiceGraphics, destroy_domain, start_image_domain
from cargobay.vmcontrol.hosts import HostConnection, UnknownHost
from cargobay.vmcontrol.libvirt_channels import StreamChannel
from cargobay.vmcontrol.manager import TransportManager
from cargobay.vmcontrol.spice.client import SpiceVmConnection

__all__ = ["LibvirtProvider", "RoutingProvider"]


@dataclass
class _LibvirtVM:
    host: HostConnection
    domain: Any
    console: StreamChannel
    pump: asyncio.Task[None]
    run_dir: Path


class LibvirtProvider:
    name = "libvirt"

    def __init__(self, manager: TransportManager, *, paths: Paths | None = None) -> None:
        self.manager = manager
        self._paths = paths or Paths.from_env()

    async def boot(self, vm: VMDef, *, run_id: str, index: int, traffic: TrafficLog) -> BootedVM:
        assert vm.host is not None
        try:
            host = await self.manager.get_libvirt_connection(vm.host)
        except UnknownHost as err:
            raise NotFound(
                f"VM {vm.name}: {err}; add it to the scenario's hosts: section "
                "or to the daemon's pool (cargobay host add)"
            ) from None
        store = ImageStore(self._paths.images)
        manifest = store.get(vm.image)
        run_dir = self._paths.runtime / "scenarios" / f"{run_id}-{index:02d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        name = f"cb-sc-{run_id}-{index:02d}-{vm.name}"[:60]
        spice = None
        if vm.spice:
            # loopback for a local host; a remote host's server must be reachable from here
            # (password-protected, a fresh password per VM)
            local = host.info.uri.is_local or host.info.uri.host in (
                "127.0.0.1",
                "::1",
                "localhost",
            )
            spice = SpiceGraphics(
                password=secrets.token_urlsafe(12), listen="127.0.0.1" if local else "0.0.0.0"
            )
        domain, info = await start_image_domain(
            host,
            store.path(vm.image),
            manifest,
            name,
            cpus=vm.cpus,
            memory_mb=vm.memory_mb,
            display=vm.resolved_display,
            spice=spice,
        )
        console_log = run_dir / "console.log"
        console: StreamChannel | None = None
        try:
            console = await StreamChannel.open_console(host, domain)
            pump = asyncio.get_running_loop().create_task(console.copy_to(console_log))
            qmp = RecordingLibvirtQmp(host, domain)
            await qmp._subscribe()
            qmp.attach(traffic, vm.name)
            qga = RecordingLibvirtQga(host, domain)
            qga.attach(traffic, vm.name)
        except BaseException:
            if console is not None:
                await console.close()
            await destroy_domain(host, domain)
            raise
        spice_conn = None
        if spice is not None and info.spice_port is not None:
            address = "127.0.0.1" if spice.listen == "127.0.0.1" else str(host.info.uri.host)
            spice_conn = SpiceVmConnection(
                address, info.spice_port, spice.password, vm_id=f"{vm.name}@{host.host_id}"
            )
        return BootedVM(
            name=vm.name,
            spice=spice_conn,
            qmp=qmp,
            qga=qga,
            console_log=console_log,
            boot_seconds=time.monotonic() - started,
            info={
                "provider": self.name,
                "host": host.host_id,
                "uri": host.uri,
                "domain": info.name,
                "machine": "q35",
                "accel": "tcg",
                "image": vm.image,
            },
            private=_LibvirtVM(host, domain, console, pump, run_dir),
        )

    async def teardown(self, booted: BootedVM) -> None:
        vm: _LibvirtVM = booted.private
        with contextlib.suppress(Exception):
            await asyncio.wait_for(booted.qmp.close(), timeout=5)
        if booted.spice is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(booted.spice.close(), timeout=5)
        try:
            await destroy_domain(vm.host, vm.domain)
        finally:
            await vm.console.close()
            vm.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await vm.pump


class RoutingProvider:
    """Local QEMU for VMs without ``host:``, libvirt for the others."""

    name = "routing"

    def __init__(self, local: VMProvider, remote: LibvirtProvider) -> None:
        self.local, self.remote = local, remote

    async def boot(self, vm: VMDef, *, run_id: str, index: int, traffic: TrafficLog) -> BootedVM:
        target = self.remote if vm.host else self.local
        return await target.boot(vm, run_id=run_id, index=index, traffic=traffic)

    async def teardown(self, booted: BootedVM) -> None:
        target = self.remote if isinstance(booted.private, _LibvirtVM) else self.local
        await target.teardown(booted)


async def manager_for(
    hosts: dict[str, str], pool: TransportManager | None = None
) -> TransportManager:
    """A manager holding the scenario's own hosts, and the pool's hosts it does not
    redefine (sharing their connections)."""
    manager = TransportManager(pool.config if pool is not None else None)
    if pool is not None:
        for host_id in pool.host_ids():
            if host_id not in hosts:
                manager.adopt(pool.host(host_id))
    for host_id, uri in hosts.items():
        await manager.add_host(HostInfo.model_validate({"id": host_id, "uri": uri}))
    return manager
