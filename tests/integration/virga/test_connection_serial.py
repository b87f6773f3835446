"""virtio-serial connections on a real pty pair and on Unix sockets.

The pty slave ``/dev/pts/N`` is a real character device, so ``serial:/dev/pts/N`` runs
the guest-side code path (device open, raw mode, pipe transports, reopen on accept).
The test drives the master end with plain non-blocking ``os.read``/``os.write``, not
with virga, so the two ends do not share code.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from virga.connection import Connection, SerialConnection, connect, listen
from virga.connection.serial import SerialDeviceListener
from virga.errors import ClosedError, ConnectError


class PtyMaster:
    """The far end of a pty, as a host chardev would be; plain fd I/O on the event loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    async def _wait(self, add: str, remove: str) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        getattr(loop, add)(self.fd, ready.set_result, None)
        try:
            await ready
        finally:
            getattr(loop, remove)(self.fd)

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; ``b""`` once every slave descriptor is closed (EIO)."""
        while True:
            try:
                return os.read(self.fd, n)
            except BlockingIOError:
                await self._wait("add_reader", "remove_reader")
            except OSError as err:
                if err.errno == errno.EIO:
                    return b""
                raise

    async def read_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = await self.read(n - len(data))
            if not chunk:
                raise EOFError(f"pty closed after {len(data)} of {n} bytes")
            data += chunk
        return bytes(data)

    async def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await self._wait("add_writer", "remove_writer")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@pytest.fixture
def pty() -> Iterator[tuple[PtyMaster, str]]:
    master_fd, slave_fd = os.openpty()
    path = os.ttyname(slave_fd)
    # Our copy of the slave is not needed: the code under test opens the path itself.
    os.close(slave_fd)
    master = PtyMaster(master_fd)
    yield master, path
    master.close()


def _slave_attrs(path: str) -> list[int]:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs: list[int] = termios.tcgetattr(fd)[:4]
        return attrs
    finally:
        os.close(fd)


async def test_device_is_put_in_raw_mode(pty: tuple[PtyMaster, str]) -> None:
    master, path = pty
    conn = await connect(f"serial:{path}", timeout=5)
    assert isinstance(conn, SerialConnection)
    assert conn.description == f"serial:{path}"
    iflag, oflag, cflag, lflag = _slave_attrs(path)
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
    assert not iflag & (termios.ICRNL | termios.IXON | termios.IXOFF | termios.ISTRIP)
    assert not oflag & termios.OPOST
    assert cflag & termios.CSIZE == termios.CS8

    # Bytes a cooked tty would translate, swallow or act on pass through unchanged ...
    special = b"a\r\nb\x03\x04\x11\x13\x1a\x7f\x00\xff"
    await master.write_all(special)
    assert await conn.read_exact(len(special)) == special
    # ... nothing is echoed back (the first bytes the master sees are the device's) ...
    await conn.write_all(b"\nEND\n")
    assert await master.read_exact(5) == b"\nEND\n"  # ... and no \n -> \r\n on output
    await conn.close()


async def test_one_mebibyte_each_way_at_once(pty: tuple[PtyMaster, str]) -> None:
    master, path = pty
    conn = await connect(f"serial:{path}", timeout=5)
    to_device = os.urandom(1 << 20)
    to_master = os.urandom(1 << 20)

    async def device_sends() -> None:
        await conn.write_all(to_master)

    results = await asyncio.wait_for(
        asyncio.gather(
            master.write_all(to_device),
            device_sends(),
            conn.read_exact(len(to_device)),
            master.read_exact(len(to_master)),
        ),
        60,
    )
    assert results[2] == to_device
    assert results[3] == to_master
    await conn.close()


async def test_eof_when_the_far_end_closes(pty: tuple[PtyMaster, str]) -> None:
    master, path = pty
    conn = await connect(f"serial:{path}", timeout=5)
    await master.write_all(b"last words")
    assert await conn.read_exact(10) == b"last words"
    master.close()
    assert await asyncio.wait_for(conn.read(), 5) == b""
    await conn.close()
    assert not conn.is_connected()


async def test_far_end_sees_close(pty: tuple[PtyMaster, str]) -> None:
    master, path = pty
    conn = await connect(f"serial:{path}", timeout=5)
    await conn.write_all(b"bye")
    await conn.close()
    await conn.close()  # idempotent
    assert await master.read_exact(3) == b"bye"  # written before close, not lost
    assert await asyncio.wait_for(master.read(), 5) == b""  # every slave fd is closed
    with pytest.raises(ClosedError):
        await conn.read()


async def test_write_eof_is_a_no_op(pty: tuple[PtyMaster, str]) -> None:
    master, path = pty
    conn = await connect(f"serial:{path}", timeout=5)
    await conn.write_eof()
    await conn.write_all(b"still open")
    assert await master.read_exact(10) == b"still open"
    await conn.close()


async def test_listen_on_device_one_connection_at_a_time(pty: tuple[PtyMaster, str]) -> None:
    master, path = pty
    async with await listen(f"serial:{path}") as listener:
        assert isinstance(listener, SerialDeviceListener)
        first = await asyncio.wait_for(listener.accept(), 5)
        second_accept = asyncio.create_task(listener.accept())
        await asyncio.sleep(0.1)
        assert not second_accept.done()  # the port is taken until `first` closes

        await master.write_all(b"one")
        assert await first.read_exact(3) == b"one"
        await first.close()

        second: Connection = await asyncio.wait_for(second_accept, 5)
        assert second is not first
        await master.write_all(b"two")
        assert await second.read_exact(3) == b"two"
        await second.write_all(b"back")
        assert await master.read_exact(4) == b"back"
        await second.close()


async def test_device_listener_close_wakes_pending_accept(pty: tuple[PtyMaster, str]) -> None:
    _, path = pty
    listener = await listen(f"serial:{path}")
    held = await listener.accept()
    waiting = asyncio.create_task(listener.accept())
    await asyncio.sleep(0.05)
    await listener.close()
    with pytest.raises(ClosedError):
        await asyncio.wait_for(waiting, 5)
    assert held.is_connected()  # closing the listener leaves an accepted connection alone
    await held.close()


async def test_non_tty_character_device() -> None:
    # /dev/random is a pollable character device that is not a tty (no raw mode to set).
    conn = await connect("serial:/dev/random", timeout=5)
    assert isinstance(conn, SerialConnection)
    await conn.write_all(b"mixed into the pool, never read back")
    assert len(await asyncio.wait_for(conn.read_exact(64), 5)) == 64
    await conn.close()


async def test_unpollable_character_device_is_refused() -> None:
    # asyncio cannot watch /dev/null: a clear error instead of reads that never finish.
    with pytest.raises(ConnectError, match="does not support polling"):
        await connect("serial:/dev/null", timeout=5)


async def test_missing_device() -> None:
    with pytest.raises(ConnectError, match=r"no device /dev/virtio-ports/no\.such\.port"):
        await connect("serial:/dev/virtio-ports/no.such.port", timeout=1)
    with pytest.raises(ConnectError, match="virtio_console"):
        await listen("serial:/dev/virtio-ports/no.such.port")


async def test_neither_device_nor_socket(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.write_bytes(b"")
    with pytest.raises(ConnectError, match="neither a character device nor a Unix socket"):
        await connect(f"serial:{path}", timeout=1)
    with pytest.raises(ConnectError, match="neither a character device nor a Unix socket"):
        await listen(f"serial:{path}")


# -- host side: the chardev's Unix socket ----------------------------------------------


async def test_host_side_listen_and_connect_over_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "chardev.sock"
    # listen = a chardev with server=off connects to us; connect = server=on chardev.
    async with await listen(f"serial:{path}") as listener:
        assert listener.description == f"serial:{path}"
        client = await connect(f"serial:{path}", timeout=5)
        assert client.description == f"serial:{path}"
        server = await asyncio.wait_for(listener.accept(), 5)
        await client.write_all(b"to guest")
        assert await server.read_exact(8) == b"to guest"
        await server.write_all(b"to host")
        assert await client.read_exact(7) == b"to host"
        await client.close()
        assert await server.read() == b""
        await server.close()


async def test_host_side_connect_without_chardev(tmp_path: Path) -> None:
    path = tmp_path / "absent.sock"
    with pytest.raises(ConnectError, match="is the server running") as info:
        await connect(f"serial:{path}", timeout=5)
    assert f"serial:{path}" in str(info.value)


def test_pty_fixture_really_is_a_character_device(pty: tuple[PtyMaster, str]) -> None:
    _, path = pty
    assert stat.S_ISCHR(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)
