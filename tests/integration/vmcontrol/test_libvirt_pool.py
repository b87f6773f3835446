"""The libvirt host pool against a real libvirtd, through three transports on loopback:
``qemu:///system``, ``qemu+tcp://127.0.0.1/system`` and ``qemu+ssh://root@127.0.0.1``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cargobay.errors import Conflict
from cargobay.vmcontrol.config import HostInfo, ReconnectBackoff, TransportConfig
from cargobay.vmcontrol.hosts import (
    HostState,
    HostUnavailable,
    HostUnreachable,
    LibvirtCallError,
    Subscription,
    UnknownHost,
)
from cargobay.vmcontrol.manager import TransportManager
from tests.integration.libvirt_env import LibvirtEnv

pytestmark = pytest.mark.integration

FAST = TransportConfig(
    connect_timeout=10,
    keepalive_interval=1,
    keepalive_count=3,
    reconnect=ReconnectBackoff(initial_delay=0.1, max_delay=1.0),
)


def _hosts(env: LibvirtEnv) -> list[HostInfo]:
    return [HostInfo(id=name, uri=uri, tags=("loopback", name)) for name, uri in env.uris().items()]


async def test_one_shared_connection_per_host_over_three_transports(libvirt_env: LibvirtEnv):
    async with TransportManager(FAST.model_copy(update={"hosts": tuple(_hosts(libvirt_env))})) as m:
        health = {h.host_id: h for h in await m.health()}
        assert set(health) == {"local", "ssh", "tcp"}
        for h in health.values():
            assert h.state is HostState.CONNECTED, h
            assert h.last_error is None
            assert h.last_check_ms is not None
            assert h.last_check_ms > 0
            assert h.libvirt_version
            assert h.libvirt_version[0].isdigit()
        # the same object every time: VMs on one host share its connection
        first = await m.get_libvirt_connection("ssh")
        assert await m.get_libvirt_connection("ssh") is first
        assert [c.host_id for c in m.hosts_tagged("loopback")] == ["local", "ssh", "tcp"]
        # every transport reaches the same libvirtd: they list the same domains
        names = []
        for host_id in ("local", "ssh", "tcp"):
            conn = await m.get_libvirt_connection(host_id)
            ids = await conn.call(
                lambda c: sorted(d.UUIDString() for d in c.listAllDomains()), what="list"
            )
            names.append(ids)
        assert names[0] == names[1] == names[2]


async def test_bad_hosts_fail_with_the_host_named_and_the_pool_keeps_serving(
    libvirt_env: LibvirtEnv,
):
    async with TransportManager(FAST) as m:
        await m.add_host(HostInfo(id="good", uri=libvirt_env.tcp_uri))
        refused = await m.add_host(HostInfo(id="refused", uri="qemu+tcp://127.0.0.1:1/system"))
        assert refused.state is HostState.FAILED
        assert refused.last_error is not None
        assert "refused" in refused.last_error
        assert "127.0.0.1:1" in refused.last_error
        with pytest.raises(HostUnreachable, match="host 'strict'"):
            await m.add_host(
                HostInfo(id="strict", uri="qemu+tcp://127.0.0.1:1/system"), require=True
            )
        assert "strict" not in m.host_ids()
        with pytest.raises(Conflict, match="already in the pool"):
            await m.add_host(HostInfo(id="good", uri=libvirt_env.local_uri))
        with pytest.raises(UnknownHost, match=r"no host 'nope'.*good, refused"):
            m.host("nope")
        # a failed host refuses calls with its last error; the good one answers meanwhile
        with pytest.raises(HostUnavailable, match="refused"):
            await m.host("refused").call(lambda c: c.getVersion(), what="version")
        good = await m.get_libvirt_connection("good")
        assert await good.call(lambda c: c.getLibVersion(), what="version") > 0
        # a libvirt error on a healthy host names the host and the operation
        with pytest.raises(LibvirtCallError, match=r"host 'good': domain lookup: .*no-such-domain"):
            await good.call(lambda c: c.lookupByName("no-such-domain"), what="domain lookup")
        states = {h.host_id: h.state for h in await m.health()}
        assert states == {"good": HostState.CONNECTED, "refused": HostState.FAILED}
        await m.remove_host("refused")
        with pytest.raises(UnknownHost):
            await m.remove_host("refused")


async def test_ssh_drop_reconnects_and_resubscribes(libvirt_env: LibvirtEnv):
    """Cut the ssh transport under a live connection: the close callback fires, the
    connection comes back by itself, and a domain-event subscription made before the cut
    still delivers events after it."""
    import libvirt

    async with TransportManager(FAST) as m:
        await m.add_host(HostInfo(id="ssh", uri=libvirt_env.ssh_uri), require=True)
        host = await m.get_libvirt_connection("ssh")
        events: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

        def on_lifecycle(_c: Any, dom: Any, event: int, _detail: int, _o: Any) -> None:
            host.dispatch(events.put_nowait, (dom.name(), event))

        await host.subscribe(
            Subscription(
                name="lifecycle",
                register=lambda conn: conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None
                ),
                deregister=lambda conn, cid: conn.domainEventDeregisterAny(cid),
            )
        )
        name = f"cb-test-{uuid.uuid4().hex[:8]}"
        xml = (
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>"
        )

        async def define_and_expect() -> None:
            dom = await host.call(lambda c: c.defineXML(xml), what="define")
            try:
                async with asyncio.timeout(10):
                    while True:
                        got = await events.get()
                        if got == (name, libvirt.VIR_DOMAIN_EVENT_DEFINED):
                            break
            finally:
                await host.call(lambda _c: dom.undefine(), what="undefine")

        await define_and_expect()
        assert libvirt_env.kill_ssh_clients() >= 1
        await host.wait_state(HostState.RECONNECTING, timeout=15)
        with pytest.raises(HostUnavailable, match="reconnecting"):
            await host.call(lambda c: c.getVersion(), what="version")
        await host.wait_state(HostState.CONNECTED, timeout=30)
        health = host.health()
        assert health.reconnects == 1
        await define_and_expect()
