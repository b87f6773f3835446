"""VirgaClient/VirgaServer end to end over real Unix sockets, for yamux and xtransport:
the seed's usage, message sizes, concurrency, limits, streams, hybrid vsock, middleware,
rate limiting, auto-reconnect and configuration errors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from virga.client import ClientConfig, VirgaClient
from virga.errors import (
    AuthenticationError,
    ClosedError,
    ConfigError,
    ConnectError,
    LocalProtocolError,
    VirgaError,
)
from virga.middleware import Compression, Encryption, Middleware, RateLimit
from virga.reconnect import ReconnectPolicy
from virga.server import ServerConfig, VirgaServer

PROTOCOLS = ["yamux", "xtransport"]
KEY = bytes(range(32))

pytestmark = pytest.mark.timeout(60)


def make_client(protocol: str, address: str, **kwargs: Any) -> VirgaClient:
    config = ClientConfig(address=address, connect_timeout_ms=2000, **kwargs)
    if protocol == "yamux":
        return VirgaClient.with_yamux(config)
    return VirgaClient.with_xtransport(config)


def make_server(protocol: str, address: str, **kwargs: Any) -> VirgaServer:
    config = ServerConfig(address=address, **kwargs)
    if protocol == "yamux":
        return VirgaServer.with_yamux(config)
    return VirgaServer.with_xtransport(config)


async def echo_forever(server: VirgaServer) -> None:
    """Answer every message to the client it came from."""
    while True:
        conn, data = await server.recv_from()
        with contextlib.suppress(VirgaError):
            await server.send(data, to=conn)


@contextlib.asynccontextmanager
async def echo_server(protocol: str, address: str, **kwargs: Any) -> AsyncIterator[VirgaServer]:
    server = make_server(protocol, address, **kwargs)
    await server.listen()
    task = asyncio.create_task(echo_forever(server))
    try:
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {timeout}s")


async def exchange(client: VirgaClient, payload: bytes) -> bytes:
    """Connect if needed, send, and wait (bounded) for one reply."""
    await client.connect()
    await client.send(payload)
    return await asyncio.wait_for(client.recv(), 5)


@pytest.fixture
def address(sock_dir: Path) -> str:
    return f"unix:{sock_dir}/virga.sock"


# --- the seed's usage --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connect_send_recv_disconnect(protocol: str, address: str) -> None:
    async with echo_server(protocol, address) as server:
        client = make_client(protocol, address)
        assert not client.is_connected()
        await client.connect()
        assert client.is_connected()
        for i in range(20):
            await client.send(f"hello {i}".encode())
            assert await client.recv() == f"hello {i}".encode()
        assert len(server.connections) == 1
        await client.disconnect()
        assert not client.is_connected()
        await wait_until(lambda: not server.connections)
        with pytest.raises(LocalProtocolError, match="call connect"):
            await client.send(b"after disconnect")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_client_as_context_manager_and_server_send_first(protocol: str, address: str) -> None:
    async with make_server(protocol, address) as server:
        async with make_client(protocol, address) as client:
            conn = await asyncio.wait_for(server.accept(), 5)
            await conn.send(b"server speaks first")
            assert await client.recv() == b"server speaks first"
            await client.send(b"reply")
            got_from, data = await server.recv_from()
            assert (got_from, data) == (conn, b"reply")
        assert not client.is_connected()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_empty_and_10mb_messages(protocol: str, address: str) -> None:
    big = os.urandom(10 * 1024 * 1024)
    async with echo_server(protocol, address), make_client(protocol, address) as client:
        await client.send(b"")
        assert await client.recv() == b""
        await client.send(big)
        back = await client.recv()
        assert len(back) == len(big)
        assert hashlib.sha256(back).digest() == hashlib.sha256(big).digest()
        await client.send(b"after")  # framing intact after the big one
        assert await client.recv() == b"after"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_message_over_max_message_is_refused_locally(protocol: str, address: str) -> None:
    async with (
        echo_server(protocol, address),
        make_client(protocol, address, max_message=1000) as client,
    ):
        with pytest.raises(LocalProtocolError):
            await client.send(b"x" * 1001)
        await client.send(b"x" * 1000)  # still usable
        assert await client.recv() == b"x" * 1000


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_many_clients_concurrently(protocol: str, address: str) -> None:
    async with echo_server(protocol, address) as server:

        async def one(n: int) -> None:
            async with make_client(protocol, address) as client:
                for i in range(10):
                    payload = f"client {n} message {i} ".encode() * (n + 1)
                    await client.send(payload)
                    assert await client.recv() == payload

        await asyncio.gather(*(one(n) for n in range(25)))
        assert server.rejected == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_max_connections_enforced(protocol: str, address: str) -> None:
    async with echo_server(protocol, address, max_connections=2) as server:
        first = make_client(protocol, address)
        second = make_client(protocol, address)
        for client in (first, second):
            await client.connect()
            await client.send(b"ping")
            assert await client.recv() == b"ping"
        extra = make_client(protocol, address)
        with pytest.raises(ClosedError):  # the socket connects, then the server closes it
            await exchange(extra, b"am I in?")
        assert server.rejected == 1
        assert len(server.connections) == 2
        # The admitted clients are unaffected, and a slot frees up on disconnect.
        await first.send(b"still here")
        assert await first.recv() == b"still here"
        await first.disconnect()
        await wait_until(lambda: len(server.connections) == 1)
        async with make_client(protocol, address) as late:
            await late.send(b"now there is room")
            assert await late.recv() == b"now there is room"
        await second.disconnect()
        await extra.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_max_connections_holds_under_a_simultaneous_rush(protocol: str, address: str) -> None:
    async with echo_server(protocol, address, max_connections=3) as server:
        clients = [make_client(protocol, address) for _ in range(8)]

        async def attempt(client: VirgaClient) -> bool:
            try:
                await exchange(client, b"hi")
            except ClosedError:
                return False
            return True

        results = await asyncio.gather(*(attempt(c) for c in clients))
        assert sum(results) == 3
        assert server.rejected == 5
        for client in clients:
            await client.disconnect()


# --- streams -----------------------------------------------------------------------------


async def test_yamux_streams_alongside_messages(address: str) -> None:
    async with echo_server("yamux", address) as server, make_client("yamux", address) as client:

        async def serve_streams() -> None:
            for _ in range(3):
                _conn, stream = await server.accept_stream()
                data = await stream.read_all()
                await stream.write(data[::-1])
                await stream.close()

        async def use_stream(n: int) -> bytes:
            stream = await client.open_stream()
            await stream.write(f"stream {n} ".encode() * 5000)
            await stream.close()  # half-close: the server sees EOF
            return await stream.read_all()

        server_task = asyncio.create_task(serve_streams())
        streams = asyncio.gather(*(use_stream(n) for n in range(3)))
        for i in range(10):  # messages flow while the streams do
            await client.send(b"msg %d" % i)
            assert await client.recv() == b"msg %d" % i
        results = await streams
        await asyncio.wait_for(server_task, 5)
        for n, back in enumerate(results):
            assert back == (f"stream {n} ".encode() * 5000)[::-1]


async def test_yamux_server_opens_a_stream_to_the_client(address: str) -> None:
    async with make_server("yamux", address) as server, make_client("yamux", address) as client:
        conn = await asyncio.wait_for(server.accept(), 5)
        stream = await conn.open_stream()
        await stream.write(b"from the server")
        await stream.close()
        accepted = await asyncio.wait_for(client.accept_stream(), 5)
        assert await accepted.read_all() == b"from the server"


async def test_xtransport_has_no_streams(address: str) -> None:
    async with (
        echo_server("xtransport", address) as server,
        make_client("xtransport", address) as client,
    ):
        with pytest.raises(LocalProtocolError, match="use yamux for streams"):
            await client.open_stream()
        with pytest.raises(LocalProtocolError, match="use yamux for streams"):
            await client.accept_stream()
        with pytest.raises(LocalProtocolError, match="no streams"):
            await server.accept_stream()
        await client.send(b"messages still work")
        assert await client.recv() == b"messages still work"


# --- hybrid vsock ------------------------------------------------------------------------


async def _relay(a: Any, b: Any) -> None:
    with contextlib.suppress(VirgaError):
        while data := await a.read():
            await b.write_all(data)
    with contextlib.suppress(VirgaError):
        await b.write_eof()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_client_over_hybrid_vsock(protocol: str, sock_dir: Path) -> None:
    """The host client dials ``hvsock:UDS:PORT``; a stand-in VMM relays the stream to the
    "guest" server on a Unix socket, as Firecracker relays it to the guest's vsock."""
    from virga.connection import connect, hvsock

    guest_address = f"unix:{sock_dir}/guest.sock"
    uds = str(sock_dir / "fc.sock")

    async def vmm_handler(host_side: Any) -> None:
        guest_side = await connect(guest_address, timeout=2)
        try:
            await asyncio.gather(_relay(host_side, guest_side), _relay(guest_side, host_side))
        finally:
            await guest_side.close()

    mux = hvsock.HybridVsockMux(uds)
    mux.register(1024, vmm_handler)
    async with echo_server(protocol, guest_address), mux:
        client = make_client(protocol, f"hvsock:{uds}:1024")
        async with client:
            for size in (0, 5, 300_000):
                payload = os.urandom(size)
                await client.send(payload)
                assert await client.recv() == payload
        with pytest.raises(ConnectError, match="port 2048"):
            await make_client(protocol, f"hvsock:{uds}:2048").connect()


# --- middleware --------------------------------------------------------------------------


class Tap:
    """Records what crosses the wire (place it last in a chain)."""

    name = "tap"

    def __init__(self) -> None:
        self.inbound_seen: list[bytes] = []

    async def outbound(self, data: bytes) -> bytes:
        return data

    async def inbound(self, data: bytes) -> bytes:
        self.inbound_seen.append(data)
        return data


def secure_chain(key: bytes = KEY, *extra: Middleware) -> Sequence[Middleware]:
    return (Compression(min_size=64), Encryption(key), *extra)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_compress_and_encrypt_end_to_end(protocol: str, address: str) -> None:
    tap = Tap()
    server_chain = secure_chain(KEY, tap)
    text = b"The quick brown fox jumps over the lazy dog. " * 20_000  # 900 kB, compressible
    noise = os.urandom(200_000)
    async with (
        echo_server(protocol, address, middleware=server_chain),
        make_client(protocol, address, middleware=secure_chain()) as client,
    ):
        for payload in (b"", b"short", text, noise):
            await client.send(payload)
            assert await client.recv() == payload
    wire_text, wire_noise = tap.inbound_seen[2], tap.inbound_seen[3]
    assert b"quick brown fox" not in wire_text
    assert len(wire_text) < len(text) // 50  # compressed before it was encrypted
    assert noise[:64] not in wire_noise
    assert len(wire_noise) <= len(noise) + 1 + Encryption.overhead


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_mismatched_keys_fail_authentication_on_the_receiver(
    protocol: str, address: str
) -> None:
    other = bytes(reversed(KEY))
    async with make_server(protocol, address, middleware=secure_chain(KEY)) as server:
        client = make_client(protocol, address, middleware=secure_chain(other))
        async with client:
            conn = await asyncio.wait_for(server.accept(), 5)
            await conn.send(b"for the right key only")
            with pytest.raises(AuthenticationError, match="different keys"):
                await client.recv()
            # The server in turn drops a client whose messages fail authentication.
            await client.send(b"forged")
            with pytest.raises(ClosedError):
                await asyncio.wait_for(client.recv(), 5)
            await wait_until(lambda: not server.connections)
            assert server._messages.empty()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_plaintext_client_cannot_talk_to_an_encrypting_server(
    protocol: str, address: str
) -> None:
    async with (
        echo_server(protocol, address, middleware=[Encryption(KEY)]) as server,
        make_client(protocol, address) as client,
    ):
        await client.send(b"hello, anyone?" * 10)
        with pytest.raises(ClosedError):
            await asyncio.wait_for(client.recv(), 5)
        await wait_until(lambda: not server.connections)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rate_limit_slows_a_transfer(protocol: str, address: str) -> None:
    rate, burst = 4_000_000.0, 64 * 1024
    limit = RateLimit(rate, burst=burst)
    chunk = os.urandom(64 * 1024)
    count = 32  # 2 MiB
    async with (
        echo_server(protocol, address),
        make_client(protocol, address, middleware=[limit]) as client,
    ):
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(count):
            await client.send(chunk)
        elapsed = loop.time() - start
        for _ in range(count):
            assert await client.recv() == chunk
    # A full bucket lets `burst` bytes through at once; the rest waits for tokens.
    assert elapsed >= (count * len(chunk) - burst) / rate
    assert limit.waited > 0


# --- auto-reconnect ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reconnects_after_the_server_restarts(protocol: str, address: str) -> None:
    policy = ReconnectPolicy(initial_delay=0.02, max_delay=0.1, max_attempts=100)
    client = make_client(protocol, address, reconnect=policy)
    async with echo_server(protocol, address):
        await client.connect()
        await client.send(b"before")
        assert await client.recv() == b"before"
    await wait_until(lambda: not client.is_connected())

    async def restart_soon() -> VirgaServer:
        await asyncio.sleep(0.2)  # the client's first attempts find nobody listening
        server = make_server(protocol, address)
        await server.listen()
        return server

    restarted = asyncio.create_task(restart_soon())
    await client.send(b"after")  # reconnects, retrying until the server is back
    server = await restarted
    try:
        conn, data = await asyncio.wait_for(server.recv_from(), 5)
        assert data == b"after"
        await server.send(b"welcome back", to=conn)
        assert await client.recv() == b"welcome back"
        assert client.reconnects == 1
    finally:
        await client.disconnect()
        await server.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reconnect_gives_up_after_max_attempts(protocol: str, address: str) -> None:
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3)
    client = make_client(protocol, address, reconnect=policy)
    async with echo_server(protocol, address):
        await client.connect()
    await wait_until(lambda: not client.is_connected())
    with pytest.raises(ConnectError, match="after 3 attempts") as info:
        await client.send(b"nobody there")
    assert info.value.address == address
    assert client.reconnects == 0
    await client.disconnect()


async def test_disconnect_stops_an_endless_retry_loop(address: str) -> None:
    policy = ReconnectPolicy(initial_delay=5.0, max_delay=5.0)  # retries forever, slowly
    client = make_client("yamux", address, reconnect=policy)
    async with echo_server("yamux", address):
        await client.connect()
    await wait_until(lambda: not client.is_connected())
    sender = asyncio.create_task(client.send(b"retrying"))
    await asyncio.sleep(0.1)  # the first attempt failed; the loop waits 5 s for the next
    assert not sender.done()
    await asyncio.wait_for(client.disconnect(), 2)
    with pytest.raises(ClosedError, match="disconnect"):
        await asyncio.wait_for(sender, 2)
    with pytest.raises(LocalProtocolError, match="call connect"):
        await client.send(b"after disconnect")


async def test_first_call_with_a_policy_connects_without_counting_a_reconnect(
    address: str,
) -> None:
    client = make_client("yamux", address, reconnect=ReconnectPolicy(max_attempts=2))
    async with echo_server("yamux", address):
        await client.send(b"implicit connect")
        assert await client.recv() == b"implicit connect"
        assert client.reconnects == 0
        await client.disconnect()


async def test_without_a_policy_a_lost_connection_raises(address: str) -> None:
    client = make_client("yamux", address)
    async with echo_server("yamux", address):
        await client.connect()
    await wait_until(lambda: not client.is_connected())
    with pytest.raises(ClosedError, match="was lost"):
        await client.send(b"x")


async def test_connect_to_nobody(address: str) -> None:
    with pytest.raises(ConnectError):
        await make_client("yamux", address).connect()
    policy = ReconnectPolicy(initial_delay=0.0, max_delay=0.0, max_attempts=2)
    with pytest.raises(ConnectError, match=r"gave up connecting.*after 2 attempts"):
        await make_client("xtransport", address, reconnect=policy).connect()


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ClientConfig(connect_timeout_ms=0), "connect_timeout_ms=0"),
        (lambda: ClientConfig(server_port=-1), "server_port=-1"),
        (lambda: ClientConfig(max_message=0), "max_message=0"),
        (lambda: ClientConfig(address="carrier-pigeon:1"), "carrier-pigeon"),
        (lambda: ServerConfig(max_connections=0), "max_connections=0"),
        (lambda: ServerConfig(handshake_timeout_ms=-5), "handshake_timeout_ms=-5"),
        (lambda: ServerConfig(address="unix:"), "unix"),
        (lambda: VirgaClient.with_yamux(ClientConfig(middleware=[object()])), "not a middleware"),  # type: ignore[list-item]
        (lambda: ReconnectPolicy(max_attempts=0), "max_attempts=0"),
        (lambda: Encryption(b"too short"), "32 bytes"),
    ],
)
def test_config_validation(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()
