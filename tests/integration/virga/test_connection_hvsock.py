"""Hybrid vsock over real Unix sockets: the host side against ``HybridVsockMux`` (the VMM
side) and against raw servers that speak the Firecracker host protocol, right or wrong."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from virga.address import HybridVsockAddress
from virga.connection import Connection, HybridVsockConnection, HybridVsockMux, connect, listen
from virga.connection.hvsock import (
    FIRST_HOST_PORT,
    REPLY_LIMIT,
    parse_connect_request,
    parse_ok_reply,
)
from virga.errors import ConnectError, VirgaTimeoutError

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(path: Path, handler: RawHandler) -> AsyncIterator[list[bytes]]:
    """A plain asyncio Unix server standing in for a VMM; yields the request lines it read."""
    requests: list[bytes] = []
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            requests.append(await reader.readline())
            await handler(reader, writer)
        finally:
            writer.close()

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.create_task(serve(reader, writer)))

    server = await asyncio.start_unix_server(on_client, str(path))
    try:
        yield requests
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _is_socket(path: str) -> bool:
    return Path(path).is_socket()


def _exists(path: str) -> bool:
    return Path(path).exists()


async def _echo(conn: Connection) -> None:
    while data := await conn.read():
        await conn.write_all(data)


def test_line_parsers() -> None:
    assert parse_ok_reply(b"OK 1073741824\n") == FIRST_HOST_PORT
    assert parse_ok_reply(b"OK 4294967295\n") == 0xFFFFFFFF
    for bad in (b"OK 4294967296\n", b"OK \n", b"OK 1", b"ok 1\n", b"OK -1\n", b"OK 1 \n", b""):
        assert parse_ok_reply(bad) is None, bad
    assert parse_connect_request(b"CONNECT 52\n") == 52
    for bad in (b"CONNECT\n", b"CONNECT x\n", b"CONNECT 52", b"connect 52\n", b"CONNECT  52\n"):
        assert parse_connect_request(bad) is None, bad


async def test_handshake_through_mux(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    async with HybridVsockMux(str(uds)) as mux:
        mux.register(52, _echo)
        conn = await connect(f"hvsock:{uds}:52", timeout=5)
        assert isinstance(conn, HybridVsockConnection)
        assert conn.local_port == FIRST_HOST_PORT
        assert conn.description == f"hvsock:{uds}:52"
        await conn.write_all(b"hello guest")
        assert await conn.read_exact(11) == b"hello guest"
        await conn.close()
        # Host ports count up per connection.
        second = await connect(mux.address(52), timeout=5)
        assert isinstance(second, HybridVsockConnection)
        assert second.local_port == FIRST_HOST_PORT + 1
        await second.close()
    assert not uds.exists()


async def test_guest_bytes_right_after_ok_reach_first_read_via_mux(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"

    async def greet(conn: Connection) -> None:
        conn.write(b"guest speaks first")
        await conn.drain()
        await conn.read()  # wait for the host to hang up

    async with HybridVsockMux(str(uds)) as mux:
        mux.register(1024, greet)
        conn = await connect(f"hvsock:{uds}:1024", timeout=5)
        assert await conn.read_exact(18) == b"guest speaks first"
        await conn.close()


async def test_no_over_read_when_ok_and_payload_share_one_segment(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    payload = b"\x00\x01guest payload right behind the OK line\n\xff"

    async def vmm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"OK 1073741824\n" + payload)  # one write, one segment
        await writer.drain()
        await reader.read()  # until the host closes

    async with raw_server(uds, vmm) as requests:
        conn = await connect(f"hvsock:{uds}:5000", timeout=5)
        assert isinstance(conn, HybridVsockConnection)
        assert conn.local_port == 1073741824
        first = await conn.read()
        rest = b""
        while len(first) + len(rest) < len(payload):
            rest += await conn.read()
        assert first + rest == payload
        assert first  # the first read already returns guest bytes ...
        assert first == payload[: len(first)]  # ... from the start of the payload
        await conn.close()
    assert requests == [b"CONNECT 5000\n"]


async def test_unknown_port_is_closed_without_reply(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    async with HybridVsockMux(str(uds)) as mux:
        mux.register(1, _echo)
        with pytest.raises(ConnectError, match="no guest listener on port 2") as info:
            await connect(f"hvsock:{uds}:2", timeout=5)
        assert f"hvsock:{uds}:2" in str(info.value)
        # The mux is still serving the registered port.
        conn = await connect(f"hvsock:{uds}:1", timeout=5)
        await conn.close()


async def test_unregister_closes_the_port(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    async with HybridVsockMux(str(uds)) as mux:
        mux.register(7, _echo)
        await (await connect(f"hvsock:{uds}:7", timeout=5)).close()
        mux.unregister(7)
        with pytest.raises(ConnectError, match="no guest listener on port 7"):
            await connect(f"hvsock:{uds}:7", timeout=5)


async def test_mux_closes_on_malformed_request(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    async with HybridVsockMux(str(uds)) as mux:
        mux.register(52, _echo)
        for request in (b"CONNECT fifty-two\n", b"HELLO\n", b"CONNECT 52 \n", b"X" * 200):
            reader, writer = await asyncio.open_unix_connection(str(uds))
            writer.write(request)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b"", request
            writer.close()


async def test_mux_drops_client_that_never_sends_a_request(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    async with HybridVsockMux(str(uds), handshake_timeout=0.2) as mux:
        mux.register(52, _echo)
        reader, writer = await asyncio.open_unix_connection(str(uds))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_garbage_reply(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"

    async def vmm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ERR no such port\n")
        await writer.drain()

    async with raw_server(uds, vmm):
        with pytest.raises(ConnectError, match="unexpected reply b'ERR no such port") as info:
            await connect(f"hvsock:{uds}:9", timeout=5)
        assert f"hvsock:{uds}:9" in str(info.value)


async def test_reply_cut_off_mid_line(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"

    async def vmm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"OK 10")
        await writer.drain()

    async with raw_server(uds, vmm):
        with pytest.raises(ConnectError, match="in the middle of its reply b'OK 10'"):
            await connect(f"hvsock:{uds}:9", timeout=5)


async def test_overlong_reply_without_newline(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"

    async def vmm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"A" * (REPLY_LIMIT * 4))
        await writer.drain()
        await reader.read()  # keep the socket open: the limit, not EOF, must end the wait

    async with raw_server(uds, vmm):
        started = time.monotonic()
        with pytest.raises(ConnectError, match=f"no reply line within {REPLY_LIMIT} bytes"):
            await connect(f"hvsock:{uds}:9", timeout=5)
        assert time.monotonic() - started < 4  # failed on the limit, not on the timeout


async def test_server_that_never_answers_times_out(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    hang = asyncio.Event()

    async def vmm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hang.wait()

    async with raw_server(uds, vmm) as requests:
        with pytest.raises(VirgaTimeoutError, match=r"timed out after 0\.3s") as info:
            await connect(f"hvsock:{uds}:9", timeout=0.3)
        assert "CONNECT" in str(info.value)
        assert isinstance(info.value, TimeoutError)
        hang.set()
    assert requests == [b"CONNECT 9\n"]


async def test_no_vmm_socket(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="no socket at"):
        await connect(f"hvsock:{tmp_path / 'none.sock'}:9", timeout=5)


async def test_listen_receives_guest_initiated_connection(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    addr = HybridVsockAddress(str(uds), 1234)
    async with HybridVsockMux(str(uds)) as mux, await listen(addr) as listener:
        assert listener.description == f"hvsock:{uds}:1234"
        assert _is_socket(addr.listen_path)
        assert addr.listen_path == f"{uds}_1234"
        guest = await mux.open_from_guest(1234, timeout=5)
        host = await listener.accept()
        await guest.write_all(b"from the guest")
        assert await host.read_exact(14) == b"from the guest"
        await host.write_all(b"from the host")
        assert await guest.read_exact(13) == b"from the host"
        await guest.close()
        assert await host.read() == b""
        await host.close()
    assert not _exists(addr.listen_path)


async def test_listen_path_by_plain_unix_connect(tmp_path: Path) -> None:
    """What Firecracker does for a guest connect: a plain Unix connect to UDS_PATH_<port>."""
    uds = tmp_path / "v.sock"
    async with await listen(f"hvsock:{uds}:77") as listener:
        _, writer = await asyncio.open_unix_connection(f"{uds}_77")
        writer.write(b"raw")
        await writer.drain()
        host = await listener.accept()
        assert await host.read_exact(3) == b"raw"
        writer.close()
        await host.close()


async def test_mux_close_cancels_handlers_and_stops_serving(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(conn: Connection) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    mux = await HybridVsockMux(str(uds)).start()
    mux.register(5, stuck)
    conn = await connect(f"hvsock:{uds}:5", timeout=5)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(mux.close(), 5)
    assert cancelled.is_set()
    assert await asyncio.wait_for(conn.read(), 5) == b""  # the handler's end was closed
    await conn.close()
    assert not uds.exists()
    with pytest.raises(ConnectError):
        await connect(f"hvsock:{uds}:5", timeout=5)


async def test_handler_failure_closes_only_that_connection(tmp_path: Path) -> None:
    uds = tmp_path / "v.sock"

    async def broken(conn: Connection) -> None:
        raise RuntimeError("handler bug")

    async with HybridVsockMux(str(uds)) as mux:
        mux.register(1, broken)
        mux.register(2, _echo)
        bad = await connect(f"hvsock:{uds}:1", timeout=5)
        assert await asyncio.wait_for(bad.read(), 5) == b""
        await bad.close()
        good = await connect(f"hvsock:{uds}:2", timeout=5)
        await good.write_all(b"still fine")
        assert await good.read_exact(10) == b"still fine"
        await good.close()
