"""hashicorp/yamux's session_test checklist, ported to virga's asyncio ``Session`` over real
Unix sockets.

Two Python sessions talk over ``socket.socketpair()`` (one test goes through
``virga.connection.listen``/``connect``); where a misbehaving peer is needed (one that
never ACKs, never answers pings, sends garbage) the other end is a raw socket speaking
frames written by hand from the spec.  Timeouts in the configs are short, so every test
takes well under a second or two; everything that can be awaited is awaited, and each
wait is bounded by ``within`` so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from virga.connection import connect, listen
from virga.connection.base import StreamConnection, stream_limit
from virga.errors import (
    ConnectionLostError,
    GoAwayError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
    VirgaError,
    VirgaTimeoutError,
)
from virga.yamux import GoAwayCode, Session, SessionState, Stream, StreamState, YamuxConfig

pytestmark = pytest.mark.integration

KIB = 1024
MIB = 1024 * KIB
WINDOW = 256 * KIB
DATA, WU, PING, GOAWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8

CONFIG = YamuxConfig(
    enable_keepalive=False,
    connection_write_timeout=2.0,
    stream_open_timeout=2.0,
    stream_close_timeout=2.0,
    accept_backlog=64,
)


def config(**changes: object) -> YamuxConfig:
    return YamuxConfig(**{**CONFIG.as_dict(), **changes})  # type: ignore[arg-type]


def within(seconds: float = 5.0) -> asyncio.Timeout:
    """Bound a wait that the code under test should end much sooner."""
    return asyncio.timeout(seconds)


async def socket_pair() -> tuple[StreamConnection, socket.socket]:
    """A virga connection and the raw socket at its other end."""
    mine, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=mine, limit=stream_limit())
    return StreamConnection(reader, writer, "socketpair"), theirs


async def connection_pair() -> tuple[StreamConnection, StreamConnection]:
    a, b = socket.socketpair()
    ra, wa = await asyncio.open_unix_connection(sock=a, limit=stream_limit())
    rb, wb = await asyncio.open_unix_connection(sock=b, limit=stream_limit())
    client = StreamConnection(ra, wa, "socketpair:client")
    return client, StreamConnection(rb, wb, "socketpair:server")


MakePair = Callable[..., Awaitable[tuple[Session, Session]]]


@pytest.fixture
async def make_pair() -> AsyncIterator[MakePair]:
    """Factory of connected (client, server) sessions; all are closed at teardown."""
    sessions: list[Session] = []

    async def make(
        client_config: YamuxConfig = CONFIG, server_config: YamuxConfig | None = None
    ) -> tuple[Session, Session]:
        a, b = await connection_pair()
        client = Session.client(a, client_config)
        server = Session.server(b, server_config or client_config)
        sessions.extend((client, server))
        return client, server

    yield make
    for session in sessions:
        await session.close()


@dataclass
class RawPeer:
    """The far end of a session as bare frames: for peers that misbehave on purpose."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def attach(cls, sock: socket.socket) -> RawPeer:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=stream_limit())
        return cls(reader, writer)

    async def frame(self) -> tuple[int, int, int, int, bytes]:
        """The next frame: (type, flags, stream id, length, payload)."""
        header = await self.reader.readexactly(12)
        version, ftype, flags, sid, length = struct.unpack(">BBHII", header)
        assert version == 0
        payload = await self.reader.readexactly(length) if ftype == DATA else b""
        return ftype, flags, sid, length, payload

    async def frame_of_type(self, ftype: int) -> tuple[int, int, int, int, bytes]:
        while True:
            frame = await self.frame()
            if frame[0] == ftype:
                return frame

    def send(self, ftype: int, flags: int, sid: int, length: int, payload: bytes = b"") -> None:
        self.writer.write(struct.pack(">BBHII", 0, ftype, flags, sid, length) + payload)

    async def at_eof(self) -> bool:
        """Read and drop frames until the session closes the socket."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        return True

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def raw_peer(cfg: YamuxConfig = CONFIG) -> AsyncIterator[tuple[Session, RawPeer]]:
    """A client session whose server is a RawPeer."""
    conn, sock = await socket_pair()
    session = Session.client(conn, cfg)
    peer = await RawPeer.attach(sock)
    try:
        yield session, peer
    finally:
        await session.close()
        peer.close()


def length_prefix(n: int) -> bytes:
    return n.to_bytes(8, "big")


async def echo_one(stream: Stream) -> None:
    """Read an 8-byte length N, echo exactly N bytes, close."""
    n = int.from_bytes(await stream.read_exact(8), "big")
    while n:
        data = await stream.read(min(n, 64 * KIB))
        if not data:
            raise StreamClosedError("echo: the peer closed early")
        await stream.write(data)
        n -= len(data)
    await stream.close()


@contextlib.asynccontextmanager
async def echo_server(session: Session) -> AsyncIterator[list[BaseException]]:
    """Echo every accepted stream until the block ends; yields the handlers' errors."""
    errors: list[BaseException] = []

    async def handle(stream: Stream) -> None:
        try:
            await echo_one(stream)
        except VirgaError as err:
            errors.append(err)

    async def serve() -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                try:
                    stream = await session.accept_stream()
                except SessionClosedError:
                    return
                group.create_task(handle(stream))

    task = asyncio.create_task(serve())
    try:
        yield errors
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def echo_client(session: Session, payload: bytes) -> bytes:
    """Open a stream, send length + payload while reading the echo back."""
    stream = await session.open_stream()

    async def send() -> None:
        await stream.write(length_prefix(len(payload)))
        view = memoryview(payload)
        for pos in range(0, len(payload), 128 * KIB):
            await stream.write(view[pos : pos + 128 * KIB])

    async with asyncio.TaskGroup() as group:
        group.create_task(send())
        back = await stream.read_exact(len(payload))
    assert await stream.read() == b""  # the echo side closed after N bytes
    await stream.close()
    return back


# -- accept, open, ids -----------------------------------------------------------------


async def test_accept_both_directions(make_pair: MakePair) -> None:
    client, server = await make_pair()
    assert client.num_streams == server.num_streams == 0
    async with within():
        c1, s2 = await asyncio.gather(client.open_stream(), server.open_stream())
        s1, c2 = await asyncio.gather(server.accept_stream(), client.accept_stream())
        await asyncio.gather(c1.established.wait(), s2.established.wait())
    assert (c1.stream_id, s1.stream_id) == (1, 1)
    assert (s2.stream_id, c2.stream_id) == (2, 2)
    assert c1.state is StreamState.ESTABLISHED
    assert client.num_streams == server.num_streams == 2
    for stream in (c1, s1, s2, c2):
        await stream.close()
    async with within():
        assert await c1.read() == b""
        assert await s2.read() == b""
    assert client.num_streams == server.num_streams == 0
    assert c1.state is StreamState.CLOSED


async def test_over_virga_listen_and_connect(sock_dir: Path) -> None:
    address = f"unix:{sock_dir}/yamux.sock"
    async with await listen(address) as listener, within():
        conn = await connect(address, timeout=2)
        served = await listener.accept()
        async with Session.client(conn, CONFIG) as client, Session.server(served, CONFIG) as server:
            async with echo_server(server) as errors:
                payload = os.urandom(300 * KIB)
                assert await echo_client(client, payload) == payload
            assert errors == []
            assert await client.ping() > 0
            assert await server.ping() > 0


async def test_concurrent_accepts(make_pair: MakePair) -> None:
    """Many tasks may wait in accept_stream at once (hashicorp's ManyStreams has 50)."""
    client, server = await make_pair()
    async with within():
        acceptors = [asyncio.create_task(server.accept_stream()) for _ in range(20)]
        await asyncio.sleep(0)  # all of them are waiting now
        opened = [await client.open_stream() for _ in range(20)]
        accepted = await asyncio.gather(*acceptors)
    assert sorted(s.stream_id for s in accepted) == [s.stream_id for s in opened]


async def test_concurrent_readers_of_one_stream(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"!")
        peer = await server.accept_stream()
        await peer.read(1)
        readers = [asyncio.create_task(peer.read(1)) for _ in range(3)]
        await asyncio.sleep(0)  # all of them are waiting now
        await stream.write(b"abc")
        await stream.close()
        assert sorted(await asyncio.gather(*readers)) == [b"a", b"b", b"c"]


async def test_data_small_and_large(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        for _ in range(1000):
            await stream.write(b"test")
        await stream.close()
        peer = await server.accept_stream()
        assert await peer.read_all() == b"test" * 1000

        big = bytes(i % 256 for i in range(512 * KIB))
        stream = await client.open_stream()
        writer = asyncio.create_task(stream.write(big))
        peer = await server.accept_stream()
        chunks = [await peer.read_exact(4 * KIB) for _ in range(128)]
        await writer
        assert b"".join(chunks) == big


# -- backlog and early close -----------------------------------------------------------


async def test_backlog_exceeded_resets_the_excess_and_the_session_survives(
    make_pair: MakePair,
) -> None:
    cfg = config(accept_backlog=4, stream_open_timeout=0.2)
    client, server = await make_pair(cfg)
    async with within():
        streams = [await client.open_stream() for _ in range(6)]
        for stream in streams:
            await stream.write(b"foo")
        for stream in streams[4:]:
            with pytest.raises(StreamResetError):
                await stream.read()
            assert stream.state is StreamState.RESET
            with pytest.raises(StreamResetError):
                await stream.write(b"more")
        accepted = [await server.accept_stream() for _ in range(4)]
        assert [s.stream_id for s in accepted] == [1, 3, 5, 7]
        for stream in accepted:
            assert await stream.read_exact(3) == b"foo"
    # The refused streams never get an ACK: that must not trip the open timeout.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.wait_closed(), 3 * cfg.stream_open_timeout)
    assert client.state is SessionState.OPEN
    async with within(), echo_server(server):
        assert await echo_client(client, b"still here") == b"still here"


async def test_backlog_many_more_streams_than_the_backlog_when_accepting(
    make_pair: MakePair,
) -> None:
    client, server = await make_pair(config(accept_backlog=8))
    async with within(), echo_server(server) as errors:
        for i in range(5 * 8):
            assert await echo_client(client, b"%d" % i) == b"%d" % i
    assert errors == []


async def test_close_before_ack(make_pair: MakePair) -> None:
    client, server = await make_pair(config(accept_backlog=8))
    async with within():
        for _ in range(8):
            stream = await client.open_stream()
            await stream.close()
        for _ in range(8):
            peer = await server.accept_stream()
            assert await peer.read() == b""
            await peer.close()
        async with echo_server(server):
            assert await echo_client(client, b"ninth") == b"ninth"


async def test_reset_before_ack_does_not_trip_the_open_timeout(make_pair: MakePair) -> None:
    cfg = config(stream_open_timeout=0.2)
    client, server = await make_pair(cfg)
    async with within():
        stream = await client.open_stream()
        await stream.reset()
        peer = await server.accept_stream()
        with pytest.raises(StreamResetError):
            await peer.read()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.wait_closed(), 3 * cfg.stream_open_timeout)
    async with within():
        assert await client.ping() > 0


async def test_open_timeout_closes_the_session_when_the_peer_never_acks() -> None:
    async with raw_peer(config(stream_open_timeout=0.1)) as (session, peer), within():
        stream = await session.open_stream()
        reader = asyncio.create_task(stream.read())
        pinger = asyncio.create_task(session.ping(timeout=5))
        assert (await peer.frame())[:3] == (WU, SYN, 1)  # the SYN arrived; no ACK ever
        await session.wait_closed()
        with pytest.raises(SessionClosedError):
            await pinger
        assert isinstance(session.close_reason, VirgaTimeoutError)
        assert "did not acknowledge stream 1" in str(session.close_reason)
        with pytest.raises(SessionClosedError):
            await reader
        with pytest.raises(SessionClosedError):
            await session.open_stream()
        assert await peer.at_eof()


async def test_ack_in_time_cancels_the_open_timeout() -> None:
    async with raw_peer(config(stream_open_timeout=0.1)) as (session, peer), within():
        stream = await session.open_stream()
        assert (await peer.frame())[:3] == (WU, SYN, 1)
        peer.send(WU, ACK, 1, 0)
        await stream.established.wait()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(session.wait_closed(), 0.3)


# -- half-close, reset, close timeout --------------------------------------------------


async def test_half_close(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"a")
        peer = await server.accept_stream()
        await peer.close()  # half-close: we stop sending, but still read
        assert await peer.read(4) == b"a"
        await stream.write(b"bcd")
        await stream.close()
        assert await peer.read(4) == b"bcd"
        assert await peer.read(4) == b""
        assert await stream.read() == b""  # the peer's FIN arrived long ago
        with pytest.raises(StreamClosedError):
            await stream.write(b"x")
        with pytest.raises(StreamClosedError, match="ended after 0 of 1"):
            await peer.read_exact(1)


async def test_reset_mid_transfer(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        writer = asyncio.create_task(stream.write(os.urandom(4 * MIB)))
        peer = await server.accept_stream()
        await peer.read_exact(100 * KIB)
        await peer.reset()
        assert peer.state is StreamState.RESET
        with pytest.raises(StreamResetError):
            await writer
        with pytest.raises(StreamResetError):
            await stream.read()
        with pytest.raises(StreamResetError):
            await peer.read()
        assert stream.state is StreamState.RESET
        async with echo_server(server):
            assert await echo_client(client, b"after reset") == b"after reset"


async def test_stream_context_manager_closes_or_resets(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        async with await client.open_stream() as stream:
            await stream.write(b"bye")
        peer = await server.accept_stream()
        assert await peer.read_all() == b"bye"

        with pytest.raises(RuntimeError):
            async with await client.open_stream() as stream:
                raise RuntimeError("user code failed")
        peer = await server.accept_stream()
        with pytest.raises(StreamResetError):
            await peer.read()


async def test_close_timeout_resets_a_stream_whose_peer_never_sends_fin(
    make_pair: MakePair,
) -> None:
    client, server = await make_pair(config(stream_close_timeout=0.1))
    async with within():
        stream = await client.open_stream()
        await stream.write(b"request")
        await stream.close()
        peer = await server.accept_stream()
        assert await peer.read_all() == b"request"
        # The server never closes: it writes more than the window the client never reads,
        # so it blocks until the client's close timeout resets the stream.
        with pytest.raises(StreamResetError):
            await peer.write(b"\x00" * (2 * WINDOW))
        assert stream.state is StreamState.RESET
        assert client.num_streams == 0


async def test_fin_before_the_close_timeout_keeps_the_stream(make_pair: MakePair) -> None:
    client, server = await make_pair(config(stream_close_timeout=0.1))
    async with within():
        stream = await client.open_stream()
        await stream.close()
        peer = await server.accept_stream()
        assert await peer.read() == b""
        await peer.write(b"answer")
        await peer.close()
        assert await stream.read_all() == b"answer"
        assert stream.state is StreamState.CLOSED


# -- many streams, big transfers, concurrency ------------------------------------------


async def test_many_concurrent_echo_streams(make_pair: MakePair) -> None:
    # All 200 SYNs can arrive before the first accept: the backlog must hold them.
    client, server = await make_pair(config(accept_backlog=256))
    payloads = [os.urandom(8 * KIB + i) for i in range(200)]
    async with within(20), echo_server(server) as errors:
        results = await asyncio.gather(*(echo_client(client, p) for p in payloads))
    assert errors == []
    assert results == payloads
    assert client.num_streams == 0


async def test_many_streams_ping_pong(make_pair: MakePair) -> None:
    client, server = await make_pair()

    async def pong(stream: Stream) -> None:
        while data := await stream.read(4):
            assert data == b"ping"
            await stream.write(b"pong")
        await stream.close()

    async def ping(stream: Stream) -> None:
        for _ in range(50):
            await stream.write(b"ping")
            assert await stream.read_exact(4) == b"pong"
        await stream.close()
        assert await stream.read() == b""

    async with within(20), asyncio.TaskGroup() as group:
        for _ in range(50):
            group.create_task(ping(await client.open_stream()))
            group.create_task(pong(await server.accept_stream()))


async def test_large_transfer_integrity(make_pair: MakePair) -> None:
    """16 MB each way at once, checked with SHA-256."""
    client, server = await make_pair()
    up = os.urandom(16 * MIB)
    down = os.urandom(16 * MIB)

    async def serve() -> None:
        stream = await server.accept_stream()
        digest = hashlib.sha256()

        async def take() -> None:
            while data := await stream.read():
                digest.update(data)

        async with asyncio.TaskGroup() as group:
            group.create_task(take())
            await stream.write(down)
            await stream.close()
        assert digest.digest() == hashlib.sha256(up).digest()

    async def talk() -> None:
        stream = await client.open_stream()
        digest = hashlib.sha256()

        async def take() -> None:
            while data := await stream.read():
                digest.update(data)

        async with asyncio.TaskGroup() as group:
            group.create_task(take())
            await stream.write(up)
            await stream.close()
        assert digest.digest() == hashlib.sha256(down).digest()

    async with within(60), asyncio.TaskGroup() as group:
        group.create_task(serve())
        group.create_task(talk())


async def test_concurrent_writers_on_one_stream_do_not_interleave(make_pair: MakePair) -> None:
    """Four tasks write 1000-byte records on one stream; each write() is one record and must
    arrive whole, though the window runs out mid-record again and again."""
    client, server = await make_pair()
    record, writers, per_writer = 1000, 4, 300

    async def write_records(stream: Stream, tag: int) -> None:
        for i in range(per_writer):
            await stream.write(bytes([tag * 50 + i % 50]) * record)

    async with within(20):
        stream = await client.open_stream()
        peer = await server.accept_stream()
        received = bytearray()

        async def read_slowly() -> None:
            while len(received) < record * writers * per_writer:
                received.extend(await peer.read(7 * KIB))

        async with asyncio.TaskGroup() as group:
            group.create_task(read_slowly())
            for tag in range(writers):
                group.create_task(write_records(stream, tag))
    counts = [0] * writers
    for pos in range(0, len(received), record):
        chunk = received[pos : pos + record]
        assert chunk == bytes([chunk[0]]) * record, f"record at {pos} is interleaved"
        counts[chunk[0] // 50] += 1
    assert counts == [per_writer] * writers


# -- flow control ----------------------------------------------------------------------


async def test_partial_read_window_update(make_pair: MakePair) -> None:
    """The writer blocks on a full window and is let go only once the reader has consumed
    half of it (hashicorp's PartialReadWindowUpdate)."""
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"!")  # make the server see the stream
        peer = await server.accept_stream()
        assert await peer.read(1) == b"!"
        extra = 1000
        writer = asyncio.create_task(peer.write(b"\x01" * (WINDOW + extra)))

        assert len(await stream.read_exact(WINDOW // 2 - 1)) == WINDOW // 2 - 1
        # A ping round trip carries anything we sent before it (a window update would have
        # gone first) and lets the server's writer run: it must still be blocked.
        await client.ping()
        assert not writer.done()

        await stream.read_exact(1)  # now half the window is consumed: update sent
        await writer
        rest = await stream.read_exact(WINDOW // 2 + extra)
        assert rest == b"\x01" * (WINDOW // 2 + extra)


async def test_window_update_arrives_during_a_blocked_write(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within(10):
        stream = await client.open_stream()
        writer = asyncio.create_task(stream.write(b"w" * (4 * WINDOW)))
        peer = await server.accept_stream()
        total = 0
        while total < 4 * WINDOW:
            total += len(await peer.read(3 * KIB))
        await writer


async def test_larger_max_window_lets_a_big_write_through_at_once(make_pair: MakePair) -> None:
    cfg = config(max_window=2 * WINDOW)
    client, server = await make_pair(cfg)
    async with within():
        stream = await client.open_stream()
        await stream.write(b".")
        peer = await server.accept_stream()
        await peer.read(1)
        stream.set_write_deadline(0.5)
        await stream.write(b"\x00" * (2 * WINDOW - 1))  # fits without any window update
        assert len(await peer.read_exact(2 * WINDOW - 1)) == 2 * WINDOW - 1


# -- deadlines -------------------------------------------------------------------------


async def test_read_deadline(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"x")
        peer = await server.accept_stream()
        stream.set_read_deadline(0.05)
        with pytest.raises(VirgaTimeoutError, match="read deadline"):
            await stream.read()
        with pytest.raises(VirgaTimeoutError):  # a passed deadline stays passed
            await stream.read()
        stream.set_read_deadline(None)
        await peer.write(b"late")
        assert await stream.read() == b"late"
        assert stream.state is StreamState.ESTABLISHED  # a timeout does not hurt the stream


async def test_extending_the_read_deadline_of_a_blocked_read(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"x")
        peer = await server.accept_stream()
        stream.set_read_deadline(0.05)
        reader = asyncio.create_task(stream.read())
        await asyncio.sleep(0)  # let the read start waiting
        stream.set_read_deadline(10)
        await asyncio.sleep(0.1)  # not synchronization: the old deadline must pass
        assert not reader.done()
        await peer.write(b"in time")
        assert await reader == b"in time"


async def test_write_deadline_when_the_peer_never_reads(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"x")
        await server.accept_stream()  # ... and never read from it
        stream.set_write_deadline(0.1)
        with pytest.raises(VirgaTimeoutError, match="write deadline"):
            await stream.write(b"\x00" * (2 * WINDOW))
        assert client.state is SessionState.OPEN
        assert await client.ping() > 0


async def test_connection_write_timeout_when_the_socket_is_never_read() -> None:
    """A peer that stops reading the socket itself: the session gives up after
    connection_write_timeout instead of buffering forever."""
    async with raw_peer(config(connection_write_timeout=0.2)) as (session, peer), within():
        stream = await session.open_stream()
        peer.send(WU, ACK, 1, 64 * MIB)  # a huge window, then never read again
        await stream.established.wait()
        with pytest.raises(VirgaTimeoutError, match=r"took longer than 0\.2s"):
            await stream.write(b"\x00" * (64 * MIB))
        await session.wait_closed()
        assert isinstance(session.close_reason, VirgaTimeoutError)


# -- ping and keepalive ----------------------------------------------------------------


async def test_ping_both_ways(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        assert await client.ping() > 0
        assert await server.ping() > 0
    assert client.rtt is not None
    assert server.rtt is not None


async def test_ping_timeout_leaves_the_session_usable() -> None:
    async with raw_peer() as (session, peer), within():
        with pytest.raises(VirgaTimeoutError):
            await session.ping(timeout=0.05)
        assert session.state is SessionState.OPEN
        _, flags, sid, opaque, _ = await peer.frame()  # the unanswered ping
        assert (flags, sid) == (SYN, 0)
        pinger = asyncio.create_task(session.ping())
        _, flags, _, opaque, _ = await peer.frame()
        peer.send(PING, ACK, 0, opaque)
        assert await pinger >= 0


async def test_keepalive_pings_and_survives_when_answered() -> None:
    cfg = config(enable_keepalive=True, keepalive_interval=0.05, connection_write_timeout=0.5)
    async with raw_peer(cfg) as (session, peer), within():
        for _ in range(3):
            ftype, flags, sid, opaque, _ = await peer.frame()
            assert (ftype, flags, sid) == (PING, SYN, 0)
            peer.send(PING, ACK, 0, opaque)
        assert session.rtt is not None
        assert session.state is SessionState.OPEN


async def test_keepalive_between_two_sessions(make_pair: MakePair) -> None:
    cfg = config(enable_keepalive=True, keepalive_interval=0.02, connection_write_timeout=0.5)
    client, server = await make_pair(cfg)
    async with within(), echo_server(server):
        # Stream traffic goes on until both keepalives have had a pong (that sets rtt).
        while client.rtt is None or server.rtt is None:
            payload = os.urandom(50 * KIB)
            assert await echo_client(client, payload) == payload
    assert client.state is server.state is SessionState.OPEN


async def test_keepalive_timeout_closes_the_session() -> None:
    cfg = config(enable_keepalive=True, keepalive_interval=0.05, connection_write_timeout=0.1)
    async with raw_peer(cfg) as (session, peer), within():
        accept = asyncio.create_task(session.accept_stream())
        ftype, flags, _, _, _ = await peer.frame()  # a ping that is never answered
        assert (ftype, flags) == (PING, SYN)
        await session.wait_closed()
        assert isinstance(session.close_reason, VirgaTimeoutError)
        assert "keepalive" in str(session.close_reason)
        with pytest.raises(SessionClosedError):
            await accept
        assert await peer.at_eof()


async def test_ping_flood_from_a_peer_that_never_reads_is_cut_off_by_keepalive() -> None:
    """Every ping is answered, but a peer that never reads lets the pongs pile up; the
    keepalive (its own ping goes unanswered) bounds how long that can last."""
    cfg = config(enable_keepalive=True, keepalive_interval=0.05, connection_write_timeout=0.1)
    async with raw_peer(cfg) as (session, peer), within():
        burst = struct.pack(">BBHII", 0, PING, SYN, 0, 1) * 4096
        while not session.closed:
            peer.writer.write(burst)
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()
        assert isinstance(session.close_reason, VirgaTimeoutError)


# -- GoAway ----------------------------------------------------------------------------


@pytest.mark.parametrize("server_goes_away", [True, False], ids=["server", "client"])
async def test_goaway(make_pair: MakePair, server_goes_away: bool) -> None:
    client, server = await make_pair()
    leaving, staying = (server, client) if server_goes_away else (client, server)
    async with within():
        before = await staying.open_stream()
        await before.write(b"old")
        old_peer = await leaving.accept_stream()
        await leaving.go_away()
        assert leaving.state is SessionState.GOING_AWAY
        await staying.ping()  # the pong comes after the GoAway on the wire
        assert staying.remote_goaway == GoAwayCode.NORMAL
        with pytest.raises(GoAwayError) as info:
            await staying.open_stream()
        assert info.value.code == GoAwayCode.NORMAL
        with pytest.raises(LocalProtocolError):
            await leaving.open_stream()
        # Existing streams go on, both ways.
        assert await old_peer.read_exact(3) == b"old"
        await old_peer.write(b"still")
        assert await before.read_exact(5) == b"still"
        await before.close()
        await old_peer.close()
        assert await old_peer.read() == b""
        assert await before.read() == b""


async def test_goaway_codes_reach_the_peer() -> None:
    async with raw_peer() as (session, peer), within():
        await session.go_away(GoAwayCode.INTERNAL_ERROR)
        assert await peer.frame() == (GOAWAY, 0, 0, 2, b"")
        peer.send(GOAWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR)
        peer.send(PING, SYN, 0, 7)  # to know the GoAway was read
        assert await peer.frame() == (PING, ACK, 0, 7, b"")
        assert session.remote_goaway == GoAwayCode.PROTOCOL_ERROR
        with pytest.raises(GoAwayError, match="protocol error"):
            await session.open_stream()


async def test_syn_after_our_goaway_is_reset() -> None:
    conn, sock = await socket_pair()
    session = Session.server(conn, CONFIG)
    peer = await RawPeer.attach(sock)
    try:
        async with within():
            await session.go_away()
            assert await peer.frame() == (GOAWAY, 0, 0, 0, b"")
            peer.send(WU, SYN, 1, 0)
            assert await peer.frame() == (WU, RST, 1, 0, b"")
            assert session.state is SessionState.GOING_AWAY
    finally:
        await session.close()
        peer.close()


# -- session end -----------------------------------------------------------------------


async def test_session_close_fails_everything_pending(make_pair: MakePair) -> None:
    client, server = await make_pair()
    async with within():
        stream = await client.open_stream()
        await stream.write(b"x")
        peer = await server.accept_stream()
        blocked = await client.open_stream()
        await server.accept_stream()  # and never read: its writer blocks on the window
        client_write = asyncio.create_task(blocked.write(b"\x00" * (2 * WINDOW)))
        client_read = asyncio.create_task(stream.read())
        client_accept = asyncio.create_task(client.accept_stream())
        server_read = asyncio.create_task(peer.read_exact(2))
        server_accept = asyncio.create_task(server.accept_stream())
        await asyncio.sleep(0)  # let them all start waiting
        await client.close()
        assert client.state is SessionState.CLOSED
        for task in (client_read, client_accept, client_write):
            with pytest.raises(SessionClosedError):
                await task
        await server.wait_closed()
        for task in (server_read, server_accept):
            with pytest.raises(SessionClosedError):
                await task
        # The GoAway went out before the connection closed.
        assert server.remote_goaway == GoAwayCode.NORMAL
        assert isinstance(server.close_reason, ConnectionLostError)
        with pytest.raises(SessionClosedError):
            await client.open_stream()
        with pytest.raises(SessionClosedError):
            await stream.write(b"y")
        with pytest.raises(SessionClosedError):
            await client.ping()
        await client.close()  # idempotent


async def test_connection_loss_ends_the_session() -> None:
    conn, sock = await socket_pair()
    session = Session.server(conn, CONFIG)
    peer = await RawPeer.attach(sock)
    async with within():
        peer.send(WU, SYN, 1, 0)
        stream = await session.accept_stream()
        reader = asyncio.create_task(stream.read())
        peer.close()
        await session.wait_closed()
        assert isinstance(session.close_reason, ConnectionLostError)
        with pytest.raises(SessionClosedError):
            await reader
    await session.close()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (struct.pack(">BBHII", 1, WU, SYN, 1, 0), "version"),
        (struct.pack(">BBHII", 0, 9, 0, 0, 0), "unknown yamux frame type 9"),
        (struct.pack(">BBHII", 0, WU, SYN, 2, 0), "parity"),
        (struct.pack(">BBHII", 0, DATA, SYN, 1, WINDOW + 1), "exceeds any window"),
    ],
    ids=["version", "type", "parity", "window"],
)
async def test_protocol_error_sends_goaway_1_and_closes(frame: bytes, message: str) -> None:
    conn, sock = await socket_pair()
    session = Session.server(conn, CONFIG)
    peer = await RawPeer.attach(sock)
    try:
        async with within():
            accept = asyncio.create_task(session.accept_stream())
            peer.writer.write(frame)
            assert await peer.frame() == (GOAWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR, b"")
            await session.wait_closed()
            assert isinstance(session.close_reason, RemoteProtocolError)
            assert message in str(session.close_reason)
            with pytest.raises(SessionClosedError):
                await accept
            assert await peer.at_eof()
    finally:
        await session.close()
        peer.close()
