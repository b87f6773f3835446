"""virga.pool over real Unix sockets: reuse, max_size with queued waiters, acquire timeout,
broken clients replaced, background health eviction, idle expiry, close, check_health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from virga.client import ClientConfig, VirgaClient
from virga.connection import listen
from virga.errors import ClosedError, ConfigError, ConnectError, VirgaError, VirgaTimeoutError
from virga.pool import ConnectionPool, Health, check_health
from virga.server import ServerConfig, VirgaServer

PROTOCOLS = ["yamux", "xtransport"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def address(sock_dir: Path) -> str:
    return f"unix:{sock_dir}/pool.sock"


@contextlib.asynccontextmanager
async def echo_server(protocol: str, address: str) -> AsyncIterator[VirgaServer]:
    config = ServerConfig(address=address)
    server = (
        VirgaServer.with_yamux(config)
        if protocol == "yamux"
        else VirgaServer.with_xtransport(config)
    )
    await server.listen()

    async def echo() -> None:
        while True:
            conn, data = await server.recv_from()
            with contextlib.suppress(VirgaError):
                await server.send(data, to=conn)

    task = asyncio.create_task(echo())
    try:
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()


def make_pool(protocol: str, address: str, **kwargs: Any) -> ConnectionPool:
    kwargs.setdefault("health_check_interval", None)
    config = ClientConfig(address=address, connect_timeout_ms=2000)
    return ConnectionPool(config, protocol=protocol, **kwargs)  # type: ignore[arg-type]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {timeout}s")


async def roundtrip(client: VirgaClient, payload: bytes) -> None:
    await client.send(payload)
    assert await asyncio.wait_for(client.recv(), 5) == payload


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_clients_are_reused(protocol: str, address: str) -> None:
    async with echo_server(protocol, address) as server, make_pool(protocol, address) as pool:
        seen = []
        for i in range(5):
            async with pool.acquire() as client:
                await roundtrip(client, b"request %d" % i)
                seen.append(client)
        assert all(c is seen[0] for c in seen)
        stats = pool.stats
        assert (stats.size, stats.idle, stats.in_use, stats.created) == (1, 1, 0, 1)
        assert len(server.connections) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_max_size_queues_waiters_in_order(protocol: str, address: str) -> None:
    async with echo_server(protocol, address), make_pool(protocol, address, max_size=2) as pool:
        order: list[tuple[int, VirgaClient]] = []
        release = [asyncio.Event(), asyncio.Event()]
        holding = asyncio.Event()

        async def holder(n: int) -> None:
            async with pool.acquire() as client:
                order.append((n, client))
                if len(order) == 2:
                    holding.set()
                await release[n].wait()

        async def waiter(n: int) -> None:
            async with pool.acquire() as client:
                order.append((n, client))
                await roundtrip(client, b"waiter %d" % n)

        holders = [asyncio.create_task(holder(n)) for n in range(2)]
        await holding.wait()
        waiters = []
        for n in (2, 3):
            waiters.append(asyncio.create_task(waiter(n)))
            await wait_until(lambda n=n: pool.stats.waiting == n - 1)  # type: ignore[misc]
        assert pool.stats.in_use == 2
        assert pool.stats.size == 2

        release[1].set()  # the second holder's client goes to the first waiter
        await holders[1]
        await waiters[0]
        assert order[2] == (2, order[1][1])
        release[0].set()
        await asyncio.gather(holders[0], waiters[1])
        assert order[3][0] == 3
        assert pool.stats.created == 2
        assert pool.stats.waiting == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_acquire_timeout(protocol: str, address: str) -> None:
    async with (
        echo_server(protocol, address),
        make_pool(protocol, address, max_size=1, acquire_timeout=0.2) as pool,
        pool.acquire() as busy,
    ):
        with pytest.raises(VirgaTimeoutError, match=r"max_size=1 in use.*raise max_size"):
            async with pool.acquire():
                pass
        assert pool.stats.waiting == 0
        await roundtrip(busy, b"the holder is unaffected")
    assert pool.closed


async def test_timed_out_waiter_does_not_leak_the_grant(address: str) -> None:
    async with echo_server("yamux", address), make_pool("yamux", address, max_size=1) as pool:
        async with pool.acquire() as first:
            task = asyncio.create_task(pool._checkout())
            await wait_until(lambda: pool.stats.waiting == 1)
        # `first` was handed to the waiting task; cancel it before it runs.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert (pool.stats.in_use, pool.stats.idle) == (0, 1)
        async with asyncio.timeout(2), pool.acquire() as again:
            assert again is first


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_broken_client_is_replaced_on_acquire(protocol: str, address: str) -> None:
    async with echo_server(protocol, address) as server, make_pool(protocol, address) as pool:
        async with pool.acquire() as first:
            await roundtrip(first, b"one")
        await server.connections[0].close()  # the server drops it while it is idle
        await wait_until(lambda: not first.is_connected())
        async with pool.acquire() as second:
            assert second is not first
            await roundtrip(second, b"two")
        stats = pool.stats
        assert (stats.created, stats.evicted, stats.size) == (2, 1, 1)


async def test_unresponsive_server_fails_the_ping_check(address: str) -> None:
    """A peer that accepts but never answers: connected, yet the ping times out."""
    listener = await listen(address)
    try:
        pool = make_pool("yamux", address, health_check_timeout=0.2, acquire_timeout=2)
        client = VirgaClient.with_yamux(ClientConfig(address=address))
        await client.connect()
        health = await check_health(client, timeout=0.2)
        assert not health.ok
        assert health.error is not None
        assert "no ping reply within 0.2s" in health.error
        await client.disconnect()
        # A new client is handed out as connected; once back in the pool, its next
        # hand-out pings first, and the silent one is replaced.
        async with pool.acquire() as first:
            pass
        async with pool.acquire() as second:
            assert second is not first
        assert not first.is_connected()
        stats = pool.stats
        assert (stats.created, stats.evicted, stats.size) == (2, 1, 1)
        await pool.close()
    finally:
        await listener.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_background_health_check_evicts_dead_idle_clients(
    protocol: str, address: str
) -> None:
    async with (
        echo_server(protocol, address) as server,
        make_pool(protocol, address, min_size=1, health_check_interval=0.05) as pool,
    ):
        assert pool.stats.idle == 1  # start() opened min_size clients
        await wait_until(lambda: len(server.connections) == 1)
        await server.connections[0].close()
        await wait_until(lambda: pool.stats.evicted == 1)
        await wait_until(lambda: pool.stats.idle == 1)  # refilled to min_size
        assert pool.stats.created == 2
        async with pool.acquire() as client:
            await roundtrip(client, b"fresh")


async def test_healthy_idle_clients_survive_checks(address: str) -> None:
    async with (
        echo_server("yamux", address),
        make_pool("yamux", address, min_size=2, health_check_interval=0.02) as pool,
    ):
        for _ in range(5):
            await pool.check_idle()
        assert (pool.stats.idle, pool.stats.evicted, pool.stats.created) == (2, 0, 2)


async def test_idle_clients_expire_down_to_min_size(address: str) -> None:
    async with (
        echo_server("yamux", address) as server,
        make_pool(
            "yamux", address, min_size=1, idle_timeout=0.05, health_check_interval=0.02
        ) as pool,
    ):
        hold = asyncio.Event()

        async def use() -> None:
            async with pool.acquire() as client:
                await hold.wait()
                await roundtrip(client, b"x")

        tasks = [asyncio.create_task(use()) for _ in range(3)]
        await wait_until(lambda: pool.stats.in_use == 3)
        hold.set()
        await asyncio.gather(*tasks)
        await wait_until(lambda: pool.stats.size == 1)
        assert pool.stats.expired == 2
        await wait_until(lambda: len(server.connections) == 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_user_error_discards_the_client(protocol: str, address: str) -> None:
    async with echo_server(protocol, address), make_pool(protocol, address) as pool:
        taken: list[VirgaClient] = []

        async def half_exchange() -> None:
            async with pool.acquire() as client:
                taken.append(client)
                await client.send(b"request")  # the reply is never read
                raise RuntimeError("half an exchange")

        with pytest.raises(RuntimeError, match="half an exchange"):
            await half_exchange()
        assert not taken[0].is_connected()
        assert (pool.stats.size, pool.stats.discarded) == (0, 1)
        async with pool.acquire() as fresh:  # so nobody reads the stale reply
            await roundtrip(fresh, b"clean")


async def test_close_closes_everything_and_fails_waiters(address: str) -> None:
    async with echo_server("yamux", address):
        pool = make_pool("yamux", address, max_size=2)
        async with pool.acquire() as idle_one:
            pass
        in_use = pool.acquire()
        busy = await in_use.__aenter__()
        hold = pool.acquire()
        await hold.__aenter__()
        waiting = asyncio.create_task(pool._checkout())
        await wait_until(lambda: pool.stats.waiting == 1)
        await pool.close()
        with pytest.raises(ClosedError, match="closed while waiting"):
            await waiting
        assert not idle_one.is_connected()
        assert not busy.is_connected()
        assert pool.stats.size == 0
        await in_use.__aexit__(None, None, None)  # returning after close is harmless
        await hold.__aexit__(None, None, None)
        with pytest.raises(ClosedError, match="is closed"):
            async with pool.acquire():
                pass
        await pool.close()  # idempotent


async def test_close_during_a_background_check(address: str) -> None:
    listener = await listen(address)  # accepts, never answers a ping
    try:
        pool = make_pool("yamux", address, health_check_interval=0.01, health_check_timeout=30)
        async with pool.acquire() as client:
            pass
        # The check has taken the client out of the idle list and waits for a pong.
        await wait_until(lambda: pool.stats.size == 1 and pool.stats.idle == 0)
        await asyncio.wait_for(pool.close(), 5)
        assert pool.stats.size == 0
        assert not client.is_connected()
    finally:
        await listener.close()


async def test_factory_source_and_connect_failures(address: str) -> None:
    made: list[VirgaClient] = []

    async def factory() -> VirgaClient:
        client = VirgaClient.with_yamux(ClientConfig(address=address, connect_timeout_ms=500))
        made.append(client)
        return client

    pool = ConnectionPool(factory, max_size=1, health_check_interval=None)
    with pytest.raises(ConnectError):  # nobody listens yet
        async with pool.acquire():
            pass
    assert pool.stats.size == 0  # the slot was given back
    async with echo_server("yamux", address):
        async with pool.acquire() as client:
            assert client is made[-1]
            await roundtrip(client, b"via factory")
        assert pool.stats.created == 1
    await pool.close()


async def test_check_health_reports_latency_and_loss(address: str) -> None:
    async with echo_server("yamux", address) as server:
        client = VirgaClient.with_yamux(ClientConfig(address=address))
        assert await check_health(client) == Health(False, error=f"{address}: not connected")
        await client.connect()
        health = await check_health(client)
        assert health.ok
        assert health.latency is not None
        assert 0 < health.latency < 2
        await wait_until(lambda: len(server.connections) == 1)
        await server.connections[0].close()
        await wait_until(lambda: not client.is_connected())
        assert not (await check_health(client)).ok
        await client.disconnect()
    async with echo_server("xtransport", address) as server:
        client = VirgaClient.with_xtransport(ClientConfig(address=address))
        await client.connect()
        assert await check_health(client) == Health(True)
        await wait_until(lambda: len(server.connections) == 1)
        await server.connections[0].close()
        await wait_until(lambda: not client.is_connected())
        assert not (await check_health(client)).ok
        await client.disconnect()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_size": 0}, "max_size=0"),
        ({"min_size": 3, "max_size": 2}, "min_size=3"),
        ({"min_size": -1}, "min_size=-1"),
        ({"acquire_timeout": 0}, "acquire_timeout=0"),
        ({"health_check_interval": -1.0}, "health_check_interval=-1.0"),
        ({"idle_timeout": float("nan")}, "idle_timeout=nan"),
        ({"protocol": "carrier-pigeon"}, "carrier-pigeon"),
    ],
)
def test_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ConnectionPool(ClientConfig(address="unix:/nowhere"), **kwargs)


def test_source_must_be_config_or_factory() -> None:
    with pytest.raises(ConfigError, match="not str"):
        ConnectionPool("unix:/nowhere")  # type: ignore[arg-type]
