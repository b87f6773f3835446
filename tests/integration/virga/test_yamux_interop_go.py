"""virga's yamux against hashicorp/yamux (Debian's 2019 snapshot), both directions.

Python client <-> Go server and Go client <-> Python server: bulk echo (1 x 64 MB through
our CLI, 100 streams at once through the Python API), slow readers on each side (the fast
sender must block on the window; nothing lost; a window violation would end the session
with a protocol error), ping, GoAway and RST.  The Go peer is tests/peers/goyamux/main.go;
its yamux log goes to stderr, where "[ERR]" lines mean it saw something wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.peers.goyamux import PeerProcess, PeerProcesses, virga_command
from virga.cli import echo_stream, make_payloads, serve_yamux_connection, yamux_echo
from virga.connection import connect, listen
from virga.errors import GoAwayError, StreamResetError, VirgaTimeoutError
from virga.yamux import GoAwayCode, Session, YamuxConfig

pytestmark = pytest.mark.integration

MiB = 1 << 20
# Slow readers take CHUNK bytes per read and then sleep DELAY: at most 1.6 MB/s.
CHUNK = 16 * 1024
DELAY = 0.010
SLOW_BYTES = 1 * MiB
# To accept SLOW_BYTES the slow side must have read at least SLOW_BYTES - 256 KiB window,
# i.e. 48 reads of CHUNK, 48 * DELAY = 0.48 s; a sender that did not block would finish
# in milliseconds.
MIN_BLOCKED = 0.3


def length(n: int) -> bytes:
    return n.to_bytes(8, "big")


async def go_server(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path, *flags: str
) -> tuple[str, PeerProcess]:
    address = f"unix:{sock_dir}/go.sock"
    peer = await peers.start(
        [str(goyamux), "serve-echo", "--listen", address, *flags], name="goyamux serve-echo"
    )
    await peer.wait_line("listening")
    return address, peer


async def go_client(goyamux: Path, peers: PeerProcesses, mode: str, *args: str) -> PeerProcess:
    return await peers.run([str(goyamux), mode, *args], within=60)


def assert_go_clean(peer: PeerProcess) -> None:
    """hashicorp/yamux logs protocol trouble (window exceeded, bad frames) as [ERR]."""
    assert "[ERR]" not in peer.stderr_text, peer.stderr_text


@contextlib.asynccontextmanager
async def client_session(address: str, **config: object) -> AsyncIterator[Session]:
    conn = await connect(address, timeout=10)
    async with Session.client(conn, YamuxConfig(**config)) as session:  # type: ignore[arg-type]
        yield session


SessionHandler = Callable[[Session], Awaitable[None]]


@contextlib.asynccontextmanager
async def python_server(
    sock_dir: Path, handler: SessionHandler | None = None, **config: object
) -> AsyncIterator[tuple[str, list[BaseException]]]:
    """An in-process yamux server; ``handler`` runs per session (default: echo every stream).

    Yields the address and a list that collects the handlers' exceptions.
    """
    address = f"unix:{sock_dir}/py.sock"
    cfg = YamuxConfig(**config)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    tasks: set[asyncio.Task[None]] = set()

    async def serve(conn: object) -> None:
        try:
            if handler is None:
                await serve_yamux_connection(conn, cfg)  # type: ignore[arg-type]
            else:
                async with Session.server(conn, cfg) as session:  # type: ignore[arg-type]
                    await handler(session)
        except Exception as err:
            errors.append(err)

    async def accept_loop() -> None:
        while True:
            conn = await listener.accept()
            task = asyncio.create_task(serve(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async with await listen(address) as listener:
        acceptor = asyncio.create_task(accept_loop())
        try:
            yield address, errors
        finally:
            acceptor.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(acceptor, *tasks, return_exceptions=True)


def ok_line(peer: PeerProcess, streams: int, nbytes: int) -> float:
    """Check the echo client's ``ok`` line; return its MB/s."""
    assert peer.proc.returncode == 0, peer.log()
    oks = [line for line in peer.lines if line.startswith("ok ")]
    assert len(oks) == 1, peer.log()
    fields = dict(item.split("=", 1) for item in oks[0].split()[1:])
    assert fields["streams"] == str(streams)
    assert fields["bytes"] == str(nbytes)
    rate = float(fields["MB/s"])
    assert rate > 0
    return rate


# --- bulk echo -----------------------------------------------------------------------------


async def test_cli_client_64mb_to_go_server(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir)
    client = await peers.run(
        virga_command("echo-client", "--connect", address, "--streams", "1", "--bytes", "64M")
    )
    ok_line(client, 1, 64 * MiB)
    assert await server.wait_line(f"echoed id=1 bytes={64 * MiB}")
    await server.stop()
    assert_go_clean(server)


async def test_go_client_64mb_to_cli_server(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address = f"unix:{sock_dir}/py.sock"
    server = await peers.start(virga_command("serve-echo", "--listen", address))
    await server.wait_line("listening")
    client = await go_client(
        goyamux, peers, "echo-client", "--connect", address, "--bytes", str(64 * MiB)
    )
    ok_line(client, 1, 64 * MiB)
    assert_go_clean(client)
    assert await server.wait_line(f"echoed id=1 bytes={64 * MiB}")


async def test_python_client_100_streams_to_go_server(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir)
    async with client_session(address) as session:
        # yamux_echo checks every stream's SHA-256 and raises on any difference.
        await yamux_echo(session, make_payloads(100, 256 * 1024))
        for _ in range(500):  # every stream is forgotten once Go's FIN has arrived too
            if not session.num_streams:
                break
            await asyncio.sleep(0.01)
        assert session.num_streams == 0
    for i in range(100):
        await server.wait_line(f"echoed id={2 * i + 1} bytes={256 * 1024}")
    await server.stop()
    assert_go_clean(server)


async def test_go_client_100_streams_to_python_server(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    async with python_server(sock_dir) as (address, errors):
        client = await go_client(
            goyamux, peers, "echo-client", "--connect", address, "--streams", "100",
            "--bytes", str(256 * 1024),
        )  # fmt: skip
    ok_line(client, 100, 256 * 1024)
    assert_go_clean(client)
    assert errors == []


# --- slow readers: backpressure through the window ------------------------------------------


async def test_slow_go_reader_blocks_python_writer(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(
        goyamux, peers, sock_dir, "--read-delay-ms", str(int(DELAY * 1000)), "--chunk", str(CHUNK)
    )
    payload = os.urandom(SLOW_BYTES)
    async with client_session(address) as session:
        stream = await session.open_stream()
        start = time.monotonic()

        async def send() -> float:
            await stream.write(length(len(payload)) + payload)
            return time.monotonic() - start

        sender = asyncio.create_task(send())
        echoed = await stream.read_exact(len(payload))
        write_took = await sender
        await stream.close()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert write_took >= MIN_BLOCKED, f"the write did not wait for the window ({write_took:.3f}s)"
    await server.wait_line(f"echoed id=1 bytes={SLOW_BYTES}")
    await server.stop()
    assert_go_clean(server)


async def test_slow_python_reader_blocks_go_writer(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir)
    payload = os.urandom(SLOW_BYTES)
    async with client_session(address) as session:
        stream = await session.open_stream()
        start = time.monotonic()
        sender = asyncio.create_task(stream.write(length(len(payload)) + payload))
        received = bytearray()
        while len(received) < len(payload):
            chunk = await stream.read(CHUNK)
            assert chunk, "the echo ended early"
            received += chunk
            await asyncio.sleep(DELAY)
        await sender
        await stream.close()
        assert not session.closed, session.close_reason
    assert bytes(received) == payload
    # The Go echo finishes its last write only once we have read all but a window's worth.
    index = await server.wait_line_index(f"echoed id=1 bytes={SLOW_BYTES}")
    assert server.times[index] - start >= MIN_BLOCKED
    await server.stop()
    assert_go_clean(server)


async def test_slow_go_reader_blocks_python_server_writer(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    took: list[float] = []

    async def handler(session: Session) -> None:
        stream = await session.accept_stream()
        start = time.monotonic()
        await echo_stream(stream)
        took.append(time.monotonic() - start)
        await session.wait_closed()

    async with python_server(sock_dir, handler) as (address, errors):
        client = await go_client(
            goyamux, peers, "echo-client", "--connect", address, "--bytes", str(SLOW_BYTES),
            "--read-delay-ms", str(int(DELAY * 1000)), "--chunk", str(CHUNK),
        )  # fmt: skip
        ok_line(client, 1, SLOW_BYTES)
        assert_go_clean(client)
        await asyncio.sleep(0.05)
    assert errors == []
    assert len(took) == 1
    assert took[0] >= MIN_BLOCKED, f"the echo did not wait for the window ({took[0]:.3f}s)"


async def test_slow_python_server_reader_blocks_go_writer(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    async def handler(session: Session) -> None:
        stream = await session.accept_stream()
        remaining = int.from_bytes(await stream.read_exact(8), "big")
        while remaining:
            chunk = await stream.read(min(CHUNK, remaining))
            assert chunk
            await stream.write(chunk)
            remaining -= len(chunk)
            await asyncio.sleep(DELAY)
        await stream.close()
        await session.wait_closed()

    async with python_server(sock_dir, handler) as (address, errors):
        client = await go_client(
            goyamux, peers, "echo-client", "--connect", address, "--bytes", str(SLOW_BYTES)
        )
    rate = ok_line(client, 1, SLOW_BYTES)
    assert_go_clean(client)
    assert errors == []
    assert rate <= SLOW_BYTES / MIN_BLOCKED / 1e6, f"Go did not wait for the window ({rate} MB/s)"


# --- ping -------------------------------------------------------------------------------------


async def test_python_pings_go(goyamux: Path, peers: PeerProcesses, sock_dir: Path) -> None:
    address, server = await go_server(goyamux, peers, sock_dir)
    async with client_session(address) as session:
        rtts = [await session.ping() for _ in range(5)]
    assert all(0 < rtt < 5 for rtt in rtts), rtts
    await server.stop()
    assert_go_clean(server)


async def test_go_pings_python(goyamux: Path, peers: PeerProcesses, sock_dir: Path) -> None:
    async with python_server(sock_dir) as (address, errors):
        client = await go_client(goyamux, peers, "ping", "--connect", address, "--count", "5")
    assert client.proc.returncode == 0, client.log()
    assert "ok pings=5" in client.lines
    assert len([line for line in client.lines if line.startswith("rtt_us=")]) == 5
    assert errors == []


async def test_python_server_pings_go_client(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    rtts: list[float] = []

    async def handler(session: Session) -> None:
        rtts.extend([await session.ping() for _ in range(3)])
        stream = await session.accept_stream()
        await echo_stream(stream)
        await session.wait_closed()

    async with python_server(sock_dir, handler) as (address, errors):
        client = await go_client(goyamux, peers, "echo-client", "--connect", address)
    ok_line(client, 1, MiB)
    assert errors == []
    assert len(rtts) == 3
    assert all(0 < rtt < 5 for rtt in rtts)


# --- GoAway -------------------------------------------------------------------------------------


async def test_go_server_goaway_refuses_python_open(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir, "--goaway-after-accept")
    async with client_session(address) as session:
        stream = await session.open_stream()
        await stream.write(length(5) + b"hello")
        # The GoAway was sent before the echo: existing streams go on after it.
        assert await stream.read_exact(5) == b"hello"
        assert session.remote_goaway == GoAwayCode.NORMAL
        with pytest.raises(GoAwayError) as info:
            await session.open_stream()
        assert info.value.code == GoAwayCode.NORMAL
        await stream.close()
    await server.wait_line("goaway sent")
    await server.stop()
    assert_go_clean(server)


async def test_python_client_goaway_refuses_go_open(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir, "--open-after-echo")
    async with client_session(address) as session:
        stream = await session.open_stream()
        await stream.write(length(5) + b"hello")
        assert await stream.read_exact(5) == b"hello"
        await session.go_away(GoAwayCode.NORMAL)
        await stream.close()  # the Go server tries to open a stream once it sees this FIN
        line = await server.wait_line("open ")
    assert line == 'open err="remote end is not accepting connections" remote_goaway=true'
    await server.stop()
    assert_go_clean(server)


async def test_go_client_goaway_refuses_python_open(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    outcome: list[BaseException | str] = []

    async def handler(session: Session) -> None:
        # Go sent GoAway before its SYN, so it is known once the stream is accepted.
        stream = await session.accept_stream()
        try:
            await session.open_stream()
        except GoAwayError as err:
            outcome.append(err)
        else:
            outcome.append("open_stream succeeded")
        await echo_stream(stream)
        await session.wait_closed()

    async with python_server(sock_dir, handler) as (address, errors):
        client = await go_client(
            goyamux, peers, "echo-client", "--connect", address, "--goaway-first"
        )
    ok_line(client, 1, MiB)
    assert "goaway sent" in client.lines
    assert errors == []
    assert len(outcome) == 1
    assert isinstance(outcome[0], GoAwayError), outcome
    assert outcome[0].code == GoAwayCode.NORMAL


async def test_python_server_goaway_refuses_go_open(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    async def handler(session: Session) -> None:
        stream = await session.accept_stream()
        await session.go_away(GoAwayCode.NORMAL)  # before the echo, so Go has seen it after
        await echo_stream(stream)
        await session.wait_closed()

    async with python_server(sock_dir, handler) as (address, errors):
        client = await go_client(
            goyamux, peers, "echo-client", "--connect", address, "--open-after-echo"
        )
    ok_line(client, 1, MiB)
    assert 'open err="remote end is not accepting connections" remote_goaway=true' in client.lines
    assert errors == []


# --- RST ------------------------------------------------------------------------------------------


async def test_python_reset_fails_go_read(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir)
    async with client_session(address) as session:
        stream = await session.open_stream()
        await stream.write(length(MiB) + b"x" * 1000)
        assert await stream.read_exact(1000) == b"x" * 1000  # Go is now mid-echo, reading
        await stream.reset()
        line = await server.wait_line("stream-error id=1 ")
        assert 'err="connection reset"' in line
        # Only that stream ended: the session goes on.
        other = await session.open_stream()
        await other.write(length(3) + b"abc")
        assert await other.read_exact(3) == b"abc"
        await other.close()
    await server.stop()
    assert_go_clean(server)


async def test_go_backlog_overflow_resets_python_streams(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    address, server = await go_server(goyamux, peers, sock_dir, "--backlog", "1", "--no-accept")
    async with client_session(address) as session:
        streams = [await session.open_stream() for _ in range(3)]
        for stream in streams[1:]:
            stream.set_read_deadline(5.0)
            with pytest.raises(StreamResetError):
                await stream.read()
        # The first one waits in Go's backlog: neither reset nor answered.
        streams[0].set_read_deadline(0.3)
        with pytest.raises(VirgaTimeoutError):
            await streams[0].read()
        assert not session.closed
    await server.stop()
    assert "backlog exceeded" in server.stderr_text


async def test_python_server_reset_fails_go_read(
    goyamux: Path, peers: PeerProcesses, sock_dir: Path
) -> None:
    async def handler(session: Session) -> None:
        stream = await session.accept_stream()
        await stream.read_exact(8)
        await stream.reset()
        await session.wait_closed()

    async with python_server(sock_dir, handler) as (address, errors):
        client = await go_client(goyamux, peers, "echo-client", "--connect", address)
    assert client.proc.returncode == 1, client.log()
    assert any(
        line.startswith("error stream 1 ") and "connection reset" in line for line in client.lines
    ), client.log()
    assert errors == []
