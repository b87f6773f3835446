"""``TransportManager``: the seed's entry point to every VM-control connection.

It holds the host pool (one ``HostConnection`` per libvirt host, shared by every VM on
that host) and the Spice VMs (one ``SpiceVmConnection`` per VM, opened on first use and
kept).  The seed's Rust shape, in Python form::

    manager = TransportManager(TransportConfig())
    await manager.add_host(HostInfo.new("host1", "192.168.1.100").with_uri("qemu+tcp://..."))
    conn = await manager.get_libvirt_connection("host1")
    manager.add_spice_vm("vm1", "192.168.1.100", 5900)
    spice = await manager.get_spice_connection("vm1")

A host that cannot be reached is still added (state ``failed``, its error kept) unless
``require=True``: the pool keeps serving the other hosts, and ``cargobay host ls`` shows
which one is down and why.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from cargobay.errors import Conflict, NotFound
from cargobay.vmcontrol.config import HostInfo, SpiceVmConfig, TransportConfig
from cargobay.vmcontrol.hosts import (
    HostConnection,
    HostHealth,
    HostState,
    HostUnreachable,
    UnknownHost,
)

if TYPE_CHECKING:
    from cargobay.vmcontrol.spice.client import SpiceVmConnection

__all__ = ["TransportManager"]


class TransportManager:
    def __init__(self, config: TransportConfig | None = None) -> None:
        self.config = config or TransportConfig()
        self._hosts: dict[str, HostConnection] = {}
        self._borrowed: set[str] = set()
        self._spice_configs: dict[str, SpiceVmConfig] = {
            vm.vm_id: vm for vm in self.config.spice.vms
        }
        self._spice: dict[str, SpiceVmConnection] = {}
        self._lock = asyncio.Lock()

    # --- hosts --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect every host of the configuration, concurrently; failures stay in the
        pool as ``failed`` hosts."""
        await asyncio.gather(
            *(self.add_host(h) for h in self.config.hosts if h.id not in self._hosts)
        )

    async def add_host(self, info: HostInfo, *, require: bool = False) -> HostHealth:
        """Add ``info`` to the pool and connect.  ``Conflict`` for a known id; with
        ``require`` an unreachable host is not kept and ``HostUnreachable`` is raised."""
        async with self._lock:
            if info.id in self._hosts:
                raise Conflict(
                    f"host {info.id!r} is already in the pool ({self._hosts[info.id].uri})"
                )
            conn = HostConnection(info, self.config)
            self._hosts[info.id] = conn
        try:
            await conn.connect()
        except HostUnreachable:
            if require:
                self._hosts.pop(info.id, None)
                raise
        return conn.health()

    def adopt(self, conn: HostConnection) -> None:
        """Share another manager's connection (a scenario run borrows the daemon's pool);
        it is not closed by this manager."""
        if conn.host_id in self._hosts:
            raise Conflict(f"host {conn.host_id!r} is already in the pool")
        self._hosts[conn.host_id] = conn
        self._borrowed.add(conn.host_id)

    async def remove_host(self, host_id: str) -> None:
        conn = self._hosts.pop(host_id, None)
        if conn is None:
            raise self._unknown(host_id)
        if host_id not in self._borrowed:
            await conn.close()
        self._borrowed.discard(host_id)

    def host(self, host_id: str) -> HostConnection:
        try:
            return self._hosts[host_id]
        except KeyError:
            raise self._unknown(host_id) from None

    async def get_libvirt_connection(self, host_id: str) -> HostConnection:
        """The host's shared connection, reconnecting a failed one first."""
        conn = self.host(host_id)
        if conn.state in (HostState.FAILED, HostState.IDLE):
            await conn.reconnect_now()
        return conn

    def host_ids(self) -> list[str]:
        return sorted(self._hosts)

    def hosts_tagged(self, tag: str) -> list[HostConnection]:
        return [c for _, c in sorted(self._hosts.items()) if tag in c.info.tags]

    async def health(self, *, check: bool = True, retry_failed: bool = True) -> list[HostHealth]:
        """Every host's health; ``check`` makes one round trip to each connected host and
        ``retry_failed`` tries failed hosts once more (concurrently)."""
        conns = [self._hosts[k] for k in sorted(self._hosts)]
        return list(
            await asyncio.gather(
                *(_health(c, check=check, retry_failed=retry_failed) for c in conns)
            )
        )

    async def host_health(self, host_id: str) -> HostHealth:
        """One host's health, after a retry when it failed and a round trip when connected."""
        return await _health(self.host(host_id), check=True, retry_failed=True)

    def _unknown(self, host_id: str) -> UnknownHost:
        known = ", ".join(sorted(self._hosts)) or "none"
        return UnknownHost(f"no host {host_id!r} in the pool (known: {known})")

    # --- Spice VMs ----------------------------------------------------------------------

    def add_spice_vm(
        self,
        vm_id: str,
        addr: str,
        port: int,
        *,
        password: str | None = None,
        tls: bool = False,
        tls_ca_file: str | None = None,
    ) -> SpiceVmConfig:
        if vm_id in self._spice_configs:
            raise Conflict(f"spice vm {vm_id!r} is already known")
        data: dict[str, object] = {"vm_id": vm_id, "server_addr": addr}
        data["tls_port" if tls else "port"] = port
        if tls:
            data["tls"] = True
        if password is not None:
            data["password"] = password
        if tls_ca_file is not None:
            data["tls_ca_file"] = tls_ca_file
        config = SpiceVmConfig.model_validate(data)
        self._spice_configs[vm_id] = config
        return config

    def spice_vms(self) -> list[SpiceVmConfig]:
        return [self._spice_configs[k] for k in sorted(self._spice_configs)]

    async def get_spice_connection(self, vm_id: str) -> SpiceVmConnection:
        """The VM's ``SpiceVmConnection``, linked (main channel) on first use."""
        from cargobay.vmcontrol.spice.client import SpiceVmConnection, tls_context

        existing = self._spice.get(vm_id)
        if existing is not None and existing.state.value == "connected":
            return existing
        try:
            config = self._spice_configs[vm_id]
        except KeyError:
            raise NotFound(
                f"no spice vm {vm_id!r} (known: {', '.join(sorted(self._spice_configs)) or 'none'})"
            ) from None
        ctx = None
        if config.uses_tls:
            ca = str(config.tls_ca_file) if config.tls_ca_file else None
            ctx = tls_context(ca, verify=config.tls_verify)
        conn = SpiceVmConnection(
            config.server_addr,
            config.connect_port,
            config.resolve_password(),
            ctx,
            vm_id=vm_id,
            timeout=self.config.connect_timeout,
        )
        await conn.connect()
        self._spice[vm_id] = conn
        return conn

    # --- closing ------------------------------------------------------------------------

    async def close(self) -> None:
        spice, self._spice = self._spice, {}
        for conn in spice.values():
            with contextlib.suppress(Exception):
                await conn.close()
        hosts, self._hosts = self._hosts, {}
        owned = [c for k, c in hosts.items() if k not in self._borrowed]
        self._borrowed.clear()
        await asyncio.gather(*(c.close() for c in owned), return_exceptions=True)

    async def __aenter__(self) -> TransportManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _health(conn: HostConnection, *, check: bool, retry_failed: bool) -> HostHealth:
    if retry_failed and conn.state is HostState.FAILED:
        with contextlib.suppress(HostUnreachable):
            await conn.reconnect_now()
    if check and conn.state is HostState.CONNECTED:
        return await conn.check()
    return conn.health()
