"""Unix and TCP connections on real sockets: errors, stale files, abstract names, IPv6, EOF."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from pathlib import Path

import pytest

from virga.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    Connection,
    Listener,
    StreamConnection,
    connect,
    listen,
)
from virga.errors import ClosedError, ConnectError, ConnectionLostError


async def _echo_once(listener: Listener) -> None:
    conn = await listener.accept()
    try:
        while data := await conn.read():
            await conn.write_all(data)
    finally:
        await conn.close()


async def _round_trip(listener: Listener, address: str) -> Connection:
    server = asyncio.create_task(_echo_once(listener))
    conn = await connect(address, timeout=5)
    await conn.write_all(b"ping")
    assert await conn.read_exact(4) == b"ping"
    await conn.write_eof()
    assert await conn.read() == b""
    await conn.close()
    await asyncio.wait_for(server, 5)
    return conn


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _dead_unix_socket(path: Path) -> None:
    """A socket file with nobody listening, as a crashed server leaves behind."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    assert path.is_socket()


# -- unix ------------------------------------------------------------------------------


async def test_unix_round_trip_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with await listen(f"unix:{path}") as listener:
        assert listener.description == f"unix:{path}"
        assert path.is_socket()
        conn = await _round_trip(listener, f"unix:{path}")
        assert conn.description == f"unix:{path}"
        assert not conn.is_connected()
    assert not path.exists()


async def test_unix_connect_missing_socket_says_server_not_running(tmp_path: Path) -> None:
    address = f"unix:{tmp_path / 'nobody.sock'}"
    with pytest.raises(ConnectError, match="is the server running") as info:
        await connect(address, timeout=5)
    assert address in str(info.value)
    assert info.value.address == address
    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_unix_connect_stale_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    _dead_unix_socket(path)
    with pytest.raises(ConnectError, match="nothing is listening") as info:
        await connect(f"unix:{path}", timeout=5)
    assert "is the server running" in str(info.value)


async def test_unix_connect_to_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConnectError, match="not a socket"):
        await connect(f"unix:{path}", timeout=5)


async def test_unix_listen_replaces_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    _dead_unix_socket(path)
    async with await listen(f"unix:{path}") as listener:
        await _round_trip(listener, f"unix:{path}")


async def test_unix_listen_refuses_a_live_socket(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    async with await listen(f"unix:{path}") as first:
        with pytest.raises(ConnectError, match="already listening"):
            await listen(f"unix:{path}")
        # The first server still owns the path and still works.
        await _round_trip(first, f"unix:{path}")


async def test_unix_listen_refuses_non_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(ConnectError, match="not a socket") as info:
        await listen(f"unix:{path}")
    assert str(path) in str(info.value)
    assert path.read_text() == "precious"


async def test_unix_listen_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="cannot listen on unix:"):
        await listen(f"unix:{tmp_path / 'no' / 'such' / 'dir.sock'}")


async def test_unix_abstract_namespace() -> None:
    name = f"@virga-test-{uuid.uuid4().hex}"
    async with await listen(f"unix:{name}") as listener:
        assert listener.description == f"unix:{name}"
        await _round_trip(listener, f"unix:{name}")
    with pytest.raises(ConnectError, match="nothing is listening"):
        await connect(f"unix:{name}", timeout=5)


async def test_unix_listener_closes_old_socket_only_if_its_own(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    first = await listen(f"unix:{path}")
    await first.close()
    second = await listen(f"unix:{path}")
    await first.close()  # idempotent, and must not remove the second server's socket
    assert path.is_socket()
    await _round_trip(second, f"unix:{path}")
    await second.close()
    assert not path.exists()


# -- tcp -------------------------------------------------------------------------------


async def test_tcp_round_trip_port_zero_gets_real_description() -> None:
    async with await listen("tcp:127.0.0.1:0") as listener:
        host, _, port = listener.description.rpartition(":")
        assert host == "tcp:127.0.0.1"
        assert int(port) > 0
        await _round_trip(listener, listener.description)


async def test_tcp_connect_refused_says_server_not_running() -> None:
    address = f"tcp:127.0.0.1:{_free_tcp_port()}"
    with pytest.raises(ConnectError, match="connection refused") as info:
        await connect(address, timeout=5)
    message = str(info.value)
    assert address in message
    assert "is the server running" in message
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_tcp_listen_port_in_use() -> None:
    async with await listen("tcp:127.0.0.1:0") as listener:
        with pytest.raises(ConnectError, match="already in use"):
            await listen(listener.description)


async def test_tcp_unresolvable_host() -> None:
    with pytest.raises(ConnectError, match="cannot resolve host"):
        await connect("tcp:no-such-host.invalid:80", timeout=5)


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 on loopback")
async def test_tcp_ipv6_loopback() -> None:
    async with await listen("tcp:[::1]:0") as listener:
        assert listener.description.startswith("tcp:[::1]:")
        await _round_trip(listener, listener.description)


# -- connection and listener semantics ----------------------------------------------------


async def test_read_exact_eof_is_connection_lost(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with await listen(f"unix:{path}") as listener:
        client = await connect(f"unix:{path}", timeout=5)
        server = await listener.accept()
        await server.write_all(b"abc")
        await server.close()
        with pytest.raises(ConnectionLostError, match="ended after 3 of 5 bytes"):
            await client.read_exact(5)
        await client.close()


async def test_half_close_keeps_the_other_direction(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with await listen(f"unix:{path}") as listener:
        client = await connect(f"unix:{path}", timeout=5)
        server = await listener.accept()
        await client.write_all(b"request")
        await client.write_eof()
        assert await server.read_exact(7) == b"request"
        assert await server.read() == b""
        await server.write_all(b"answer")
        await server.close()
        assert await client.read_exact(6) == b"answer"
        assert await client.read() == b""
        await client.close()


async def test_closed_connection_refuses_use(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with await listen(f"unix:{path}") as listener:
        client = await connect(f"unix:{path}", timeout=5)
        server = await listener.accept()
        await client.close()
        await client.close()  # idempotent
        assert not client.is_connected()
        with pytest.raises(ClosedError):
            await client.read()
        with pytest.raises(ClosedError):
            client.write(b"x")
        # The peer sees end of file.
        assert await server.read() == b""
        await server.close()


async def test_read_until_leaves_the_rest_buffered(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with await listen(f"unix:{path}") as listener:
        client = await connect(f"unix:{path}", timeout=5)
        assert isinstance(client, StreamConnection)
        server = await listener.accept()
        await server.write_all(b"HELLO 1\nrest of the stream")
        assert await client.read_until(b"\n", 64) == b"HELLO 1\n"
        assert await client.read_exact(18) == b"rest of the stream"
        await server.write_all(b"0123456789")
        with pytest.raises(ConnectionLostError, match="within 4 bytes"):
            await client.read_until(b"\n", 4)
        assert await client.read_exact(6) == b"456789"
        await server.write_all(b"tail")
        await server.close()
        with pytest.raises(ConnectionLostError, match="ended before"):
            await client.read_until(b"\n", 64)
        await client.close()


async def test_large_transfer_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    payload = os.urandom(4 << 20)
    async with await listen(f"unix:{path}") as listener:
        client = await connect(f"unix:{path}", timeout=5)
        server = await listener.accept()

        async def send(conn: Connection) -> None:
            await conn.write_all(payload)

        got = await asyncio.gather(
            send(client),
            send(server),
            client.read_exact(len(payload)),
            server.read_exact(len(payload)),
        )
        assert got[2] == payload
        assert got[3] == payload
        await client.close()
        await server.close()


async def test_listener_close_wakes_pending_accept(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = await listen(f"unix:{path}")
    waiting = [asyncio.create_task(listener.accept()) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in waiting)
    await listener.close()
    for task in waiting:
        with pytest.raises(ClosedError, match="is closed"):
            await asyncio.wait_for(task, 5)
    with pytest.raises(ClosedError):
        await listener.accept()
    assert not path.exists()
    with pytest.raises(ConnectError):
        await connect(f"unix:{path}", timeout=5)


async def test_listener_close_drops_unaccepted_connections(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = await listen(f"unix:{path}")
    client = await connect(f"unix:{path}", timeout=5)
    await asyncio.sleep(0.05)  # let the server callback queue it
    await listener.close()
    assert await asyncio.wait_for(client.read(), 5) == b""
    await client.close()


def test_connect_has_a_default_timeout() -> None:
    import inspect

    assert inspect.signature(connect).parameters["timeout"].default == DEFAULT_CONNECT_TIMEOUT
    assert DEFAULT_CONNECT_TIMEOUT > 0


async def test_close_does_not_hang_on_a_peer_that_stopped_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virga.connection import base

    monkeypatch.setattr(base, "CLOSE_FLUSH_TIMEOUT", 0.2)
    path = tmp_path / "s.sock"
    async with await listen(f"unix:{path}") as listener:
        client = await connect(f"unix:{path}", timeout=5)
        server = await listener.accept()  # never reads
        client.write(b"x" * (16 << 20))  # far more than the socket buffers hold
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(client.close(), 5)
        assert asyncio.get_running_loop().time() - started < 2
        assert not client.is_connected()
        # The unsent rest was dropped: the reader gets less than was written, then the end.
        received = 0
        with contextlib.suppress(ConnectionLostError):
            while chunk := await asyncio.wait_for(server.read(), 5):
                received += len(chunk)
        assert received < 16 << 20
        await server.close()
