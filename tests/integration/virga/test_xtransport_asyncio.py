"""XTransportChannel over real Unix sockets (virga.connection.listen / connect).

Besides channel-to-channel traffic, some tests put a hand-written peer on the other end
that reads and writes frames with ``struct`` the way the kylin-x-kernel/xtransfer crate
does (one frame, then wait for its Ack), so the wire behaviour is checked independently
of the codec under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from virga.connection import Connection, connect, listen
from virga.errors import (
    ClosedError,
    ConnectionLostError,
    LocalProtocolError,
    RemoteProtocolError,
    VirgaTimeoutError,
)
from virga.xtransport import ChannelState, XTransportChannel, XTransportConfig

pytestmark = pytest.mark.timeout(60)

MAGIC = 0x58545250
DATA, HEAD, CHUNK, ACK = 0, 1, 2, 3

Pair = Callable[..., Awaitable[tuple[XTransportChannel, XTransportChannel]]]


@asynccontextmanager
async def raw_pair(sock_dir: Path) -> AsyncIterator[tuple[Connection, Connection]]:
    """(client, server) connections over a fresh Unix socket."""
    async with await listen(f"unix:{sock_dir}/x.sock") as listener:
        client = await connect(f"unix:{sock_dir}/x.sock", timeout=5)
        server = await asyncio.wait_for(listener.accept(), 5)
        try:
            yield client, server
        finally:
            await client.close()
            await server.close()


@pytest.fixture
async def pair(sock_dir: Path) -> AsyncIterator[Pair]:
    """Factory: ``await pair(client_config, server_config)`` -> (client, server) channels."""
    async with await listen(f"unix:{sock_dir}/x.sock") as listener:
        made: list[XTransportChannel] = []

        async def make(
            client_config: XTransportConfig | None = None,
            server_config: XTransportConfig | None = None,
        ) -> tuple[XTransportChannel, XTransportChannel]:
            conn = await connect(f"unix:{sock_dir}/x.sock", timeout=5)
            accepted = await asyncio.wait_for(listener.accept(), 5)
            client = XTransportChannel(conn, client_config)
            server = XTransportChannel(accepted, server_config or client_config)
            made.extend([client, server])
            return client, server

        try:
            yield make
        finally:
            for channel in made:
                await channel.close()


async def read_frame(conn: Connection) -> tuple[int, int, bytes]:
    magic, version, ftype, seq, length, crc = struct.unpack("<IBBIHI", await conn.read_exact(16))
    assert (magic, version) == (MAGIC, 1)
    payload = await conn.read_exact(length)
    assert zlib.crc32(payload) == crc
    return ftype, seq, payload


def frame(ftype: int, seq: int, payload: bytes) -> bytes:
    return struct.pack("<IBBIHI", MAGIC, 1, ftype, seq, len(payload), zlib.crc32(payload)) + payload


SIZES = [0, 1, 4079, 4080, 4081, 8160, 8161, 100_000]


async def test_messages_both_ways(pair: Pair) -> None:
    client, server = await pair()
    sent = [os.urandom(n) for n in SIZES]
    for message in sent:
        await client.send(message)
    assert [await server.recv() for _ in sent] == sent
    for message in reversed(sent):
        await server.send(message)
    assert [await client.recv() for _ in sent] == sent[::-1]


async def test_both_directions_at_once(pair: Pair) -> None:
    client, server = await pair()
    up = [os.urandom(n) for n in SIZES * 3]
    down = [os.urandom(n) for n in reversed(SIZES * 3)]

    async def send_all(channel: XTransportChannel, msgs: list[bytes]) -> None:
        for m in msgs:
            await channel.send(m)

    async def recv_n(channel: XTransportChannel, n: int) -> list[bytes]:
        return [await channel.recv() for _ in range(n)]

    _, _, got_up, got_down = await asyncio.gather(
        send_all(client, up),
        send_all(server, down),
        recv_n(server, len(up)),
        recv_n(client, len(down)),
    )
    assert got_up == up
    assert got_down == down


async def test_ten_megabytes_each_way(pair: Pair) -> None:
    client, server = await pair()
    data = os.urandom(10 * 1024 * 1024)

    async def echo() -> None:
        await server.send(await server.recv())

    echo_task = asyncio.create_task(echo())
    await client.send(data)
    back = await client.recv()
    await echo_task
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


async def test_concurrent_senders_do_not_interleave_frames(pair: Pair) -> None:
    client, server = await pair(XTransportConfig(frame_size=256))
    sent = [bytes([i]) * (3000 + i) for i in range(20)]
    results = await asyncio.gather(*(client.send(m) for m in sent), *(server.recv() for _ in sent))
    assert sorted(results[len(sent) :]) == sorted(sent)


@pytest.mark.parametrize("window", [1, 64])
async def test_wait_for_ack_both_ways(pair: Pair, window: int) -> None:
    cfg = XTransportConfig(wait_for_ack=True, ack_window=window, ack_timeout=10)
    client, server = await pair(cfg)
    big = os.urandom(2 * 1024 * 1024 if window > 1 else 300_000)
    sent = [b"hello", big, b""]

    async def serve() -> None:
        for _ in sent:
            await server.send(await server.recv())

    serving = asyncio.create_task(serve())
    for message in sent:
        await client.send(message)
        assert await client.recv() == message
    await serving


async def test_wait_for_ack_in_both_directions_simultaneously(pair: Pair) -> None:
    client, server = await pair(XTransportConfig(wait_for_ack=True, ack_window=8))
    a, b = os.urandom(1_000_000), os.urandom(700_000)
    results = await asyncio.gather(client.send(a), server.send(b), server.recv(), client.recv())
    assert results[2:] == [a, b]


async def test_send_returns_only_after_the_ack(sock_dir: Path) -> None:
    async with raw_pair(sock_dir) as (conn, peer):
        channel = XTransportChannel(conn, XTransportConfig(wait_for_ack=True))
        sending = asyncio.create_task(channel.send(b"please ack"))
        assert await read_frame(peer) == (DATA, 0, b"please ack")
        await asyncio.sleep(0.05)
        assert not sending.done()
        peer.write(frame(ACK, 0, struct.pack("<I", 0)))
        await asyncio.wait_for(sending, 5)
        await channel.close()


async def test_stop_and_wait_against_a_crate_style_peer(sock_dir: Path) -> None:
    """ack_window=1 sends one frame, waits for its Ack, as the crate does; and we ack its frames."""
    async with raw_pair(sock_dir) as (conn, peer):
        cfg = XTransportConfig(frame_size=64, wait_for_ack=True, ack_window=1)
        channel = XTransportChannel(conn, cfg)
        message = os.urandom(100)  # head + 3 chunks of at most 48
        sending = asyncio.create_task(channel.send(message))
        peer_seq = 0
        frames = []
        for _ in range(4):
            frames.append(await read_frame(peer))
            # nothing more may arrive before this frame is acknowledged
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(peer.read(1), 0.05)
            peer.write(frame(ACK, peer_seq, struct.pack("<I", frames[-1][1])))
            peer_seq += 1
        await asyncio.wait_for(sending, 5)
        assert [(t, s) for t, s, _ in frames] == [(HEAD, 0), (CHUNK, 1), (CHUNK, 2), (CHUNK, 3)]
        assert struct.unpack("<QQII", frames[0][2][:24]) == (100, 1, 3, 0)
        assert b"".join(p for _, _, p in frames[1:]) == message

        # The peer sends the crate's way: each frame, then our Ack for it.
        reply = os.urandom(60)
        head = struct.pack("<QQII", 60, 1, 2, 0) + bytes(8)
        receiving = asyncio.create_task(channel.recv())
        our_seq = 4  # our four frames above took 0..3; our Acks continue our numbering
        for ftype, payload in [(HEAD, head), (CHUNK, reply[:48]), (CHUNK, reply[48:])]:
            sent_seq = peer_seq
            peer.write(frame(ftype, sent_seq, payload))
            peer_seq += 1
            ack_type, ack_seq, ack_payload = await asyncio.wait_for(read_frame(peer), 5)
            assert ack_type == ACK
            assert struct.unpack("<I", ack_payload) == (sent_seq,)
            assert ack_seq == our_seq
            our_seq += 1
        assert await asyncio.wait_for(receiving, 5) == reply
        await channel.close()


async def test_ack_timeout(sock_dir: Path) -> None:
    async with raw_pair(sock_dir) as (conn, peer):
        channel = XTransportChannel(conn, XTransportConfig(wait_for_ack=True, ack_timeout=0.2))
        with pytest.raises(VirgaTimeoutError, match=r"no Ack arrived within 0.2s \(1 frames"):
            await channel.send(b"into the void")
        assert await read_frame(peer) == (DATA, 0, b"into the void")
        assert channel.state is ChannelState.FAILED
        with pytest.raises(VirgaTimeoutError):
            await channel.send(b"again")
        with pytest.raises(VirgaTimeoutError):
            await channel.recv()
        assert await asyncio.wait_for(peer.read(), 5) == b""  # the connection was closed
        await channel.close()


async def test_garbage_from_the_peer(sock_dir: Path) -> None:
    async with raw_pair(sock_dir) as (conn, peer):
        channel = XTransportChannel(conn)
        await peer.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        with pytest.raises(RemoteProtocolError, match="bad magic"):
            await asyncio.wait_for(channel.recv(), 5)
        with pytest.raises(RemoteProtocolError):
            await channel.send(b"x")
        assert await asyncio.wait_for(peer.read(), 5) == b""
        await channel.close()


async def test_corrupted_frame_from_the_peer(sock_dir: Path) -> None:
    async with raw_pair(sock_dir) as (conn, peer):
        channel = XTransportChannel(conn)
        good = frame(DATA, 0, b"good")
        bad = bytearray(frame(DATA, 1, b"bad!"))
        bad[-1] ^= 0xFF
        await peer.write_all(good + bytes(bad))
        assert await channel.recv() == b"good"
        with pytest.raises(RemoteProtocolError, match="CRC-32"):
            await channel.recv()
        await channel.close()


async def test_peer_close_after_messages(pair: Pair) -> None:
    client, server = await pair()
    await server.send(b"one")
    await server.send(b"two")
    await server.close()
    assert await client.recv() == b"one"
    assert await client.recv() == b"two"
    with pytest.raises(ConnectionLostError, match="peer closed"):
        await client.recv()
    assert client.state is ChannelState.FAILED


async def test_peer_close_in_the_middle_of_a_message(sock_dir: Path) -> None:
    async with raw_pair(sock_dir) as (conn, peer):
        channel = XTransportChannel(conn)
        head = struct.pack("<QQII", 5000, 1, 2, 0) + bytes(8)
        await peer.write_all(frame(HEAD, 0, head) + frame(CHUNK, 1, bytes(4080)))
        await peer.close()
        with pytest.raises(RemoteProtocolError, match="ended inside message 1"):
            await asyncio.wait_for(channel.recv(), 5)
        await channel.close()


async def test_local_close(pair: Pair) -> None:
    client, server = await pair()
    await client.send(b"bye")
    await client.close()
    await client.close()
    assert client.state is ChannelState.CLOSED
    with pytest.raises(ClosedError):
        await client.send(b"x")
    with pytest.raises(ClosedError):
        await client.recv()
    assert await server.recv() == b"bye"
    with pytest.raises(ConnectionLostError):
        await server.recv()


async def test_close_wakes_a_waiting_recv(pair: Pair) -> None:
    client, _server = await pair()
    waiting = asyncio.create_task(client.recv())
    await asyncio.sleep(0.01)
    await client.close()
    with pytest.raises(ClosedError):
        await asyncio.wait_for(waiting, 5)


async def test_oversize_send_leaves_the_channel_usable(pair: Pair) -> None:
    client, server = await pair(XTransportConfig(max_message_size=1000))
    with pytest.raises(LocalProtocolError, match="exceeds max_message_size"):
        await client.send(bytes(1001))
    await client.send(bytes(1000))
    assert await server.recv() == bytes(1000)


async def test_oversize_message_from_the_peer(pair: Pair) -> None:
    client, server = await pair(XTransportConfig(), XTransportConfig(max_message_size=10_000))
    await client.send(bytes(10_001))
    with pytest.raises(RemoteProtocolError, match="exceeds max_message_size 10000"):
        await server.recv()


async def test_cancelled_send_mid_message_breaks_the_channel(sock_dir: Path) -> None:
    async with raw_pair(sock_dir) as (conn, peer):
        channel = XTransportChannel(conn)
        # the peer reads nothing, so the send blocks in drain with frames already written
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.send(bytes(10 * 1024 * 1024)), 0.3)
        assert channel.state is ChannelState.FAILED
        with pytest.raises(LocalProtocolError, match="interrupted mid-message"):
            await channel.send(b"x")
        with pytest.raises(LocalProtocolError):
            await channel.recv()
        # The peer goes away first: closing a connection whose peer reads nothing would
        # wait for the connection layer's flush timeout.
        await peer.close()
        await channel.close()
        assert channel.state is ChannelState.CLOSED
