"""virtio-serial ports: ``serial:PATH``.

Two sides, told apart by what ``PATH`` is:

* a character device (the guest: ``/dev/vport0p1``, ``/dev/virtio-ports/NAME``; or any
  tty): opened ``O_RDWR | O_NONBLOCK | O_NOCTTY`` and driven by asyncio's pipe
  transports, which accept character devices.  A tty is put into raw mode, so every byte
  passes unchanged (no echo, no CR/LF mapping, no XON/XOFF, no signals).
* a Unix socket, or nothing yet (the host: QEMU's ``-chardev socket,path=PATH``):
  ``connect`` is a Unix connect to the chardev (``server=on``), ``listen`` a Unix listen
  for a chardev that connects to us (``server=off``).

A virtio-serial port is one connection at a time, and it has no half-close: the guest
reads end of file while the host side is not connected.  So on a device, ``listen``
returns a listener whose ``accept`` opens the device, waits until the other side is
there, and after that connection is closed the next ``accept`` opens it again; and
``write_eof`` does nothing (the protocol on top carries its own end-of-stream).  A
device whose other side is gone reports ``POLLHUP``; that is how "not connected yet" is
seen, by polling every ``PEER_POLL_INTERVAL`` seconds, because the kernel sends no event
when the host connects.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import select
import stat
import termios
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self

from virga.address import SerialAddress, UnixAddress
from virga.connection.base import Connection, QueueListener, StreamConnection, stream_limit
from virga.connection.net import connect_unix, listen_unix
from virga.errors import ClosedError, ConnectError, VirgaTimeoutError

__all__ = [
    "PEER_POLL_INTERVAL",
    "SerialConnection",
    "SerialDeviceListener",
    "connect_serial",
    "is_character_device",
    "listen_serial",
    "make_raw",
    "serial_connection_from_fd",
]

PEER_POLL_INTERVAL: Final = 0.1


def make_raw(fd: int) -> None:
    """Put the tty ``fd`` into raw 8-bit mode (as ``cfmakeraw``), effective at once."""
    attrs = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag = attrs[0], attrs[1], attrs[2], attrs[3]
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.IXANY
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB)
    cflag |= termios.CS8
    attrs[0], attrs[1], attrs[2], attrs[3] = iflag, oflag, cflag, lflag
    cc = attrs[6]
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def is_character_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


class _ReadProtocol(asyncio.StreamReaderProtocol):
    """Feeds the reader; ``EIO`` (a pty whose other end closed) counts as end of file."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


_MAX_READ_BATCH = 256 * 1024


class _DrainingReadTransport(asyncio.ReadTransport):
    """asyncio's read-pipe transport, except that one readiness callback reads until the
    device has nothing more (up to ``_MAX_READ_BATCH``).

    A virtio-serial port hands out at most 4 KiB per ``read()``; one event-loop turn per
    4 KiB made host-to-guest transfers crawl under TCG (about 1 MB/s).  Semantics are
    the pipe transport's: EOF calls ``eof_received`` then ``connection_lost(None)``; an
    ``OSError`` ends the transport with ``connection_lost(exc)``; pause/resume follow the
    StreamReader's flow control.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, file: Any, protocol: asyncio.Protocol
    ) -> None:
        super().__init__({"pipe": file})
        self._loop = loop
        self._file = file
        self._fd: int = file.fileno()
        self._protocol = protocol
        self._paused = False
        self._closing = False
        os.set_blocking(self._fd, False)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start)

    def _start(self) -> None:
        if not self._closing and not self._paused:
            self._loop.add_reader(self._fd, self._read_ready)

    def _read_ready(self) -> None:
        chunks: list[bytes] = []
        total = 0
        end: OSError | None = None
        eof = False
        while total < _MAX_READ_BATCH:
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                end = exc
                break
            if not data:
                eof = True
                break
            chunks.append(data)
            total += len(data)
        if chunks:
            self._protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if end is not None:
            self._close(end)
        elif eof and not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
            self._loop.call_soon(self._protocol.eof_received)
            self._loop.call_soon(self._connection_lost, None)

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def is_closing(self) -> bool:
        return self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _close(self, exc: Exception | None) -> None:
        self._closing = True
        self._loop.remove_reader(self._fd)
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._file.close()


class _WriteProtocol(asyncio.BaseProtocol):
    """Flow control for the write transport: ``drain`` waits while it is paused."""

    def __init__(self) -> None:
        self._paused = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.error: Exception | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc or ConnectionResetError("the serial port was closed")
        self._wake(self.error)
        if not self.lost.done():
            self.lost.set_result(None)

    def _wake(self, exc: Exception | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    async def drain(self) -> None:
        if self.error is not None:
            raise self.error
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


class _PipeWriter:
    """A ``ByteWriter`` over asyncio's write-pipe transport; closing it closes both halves."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: _WriteProtocol,
        read_transport: asyncio.ReadTransport,
        read_protocol: _ReadProtocol,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._read_transport = read_transport
        self._read_protocol = read_protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing() or self._protocol.error is not None

    async def drain(self) -> None:
        await self._protocol.drain()

    def can_write_eof(self) -> bool:
        return False  # a serial port has no half-close

    def write_eof(self) -> None:
        raise OSError(errno.EOPNOTSUPP, "a serial port has no half-close")

    def close(self) -> None:
        # The write transport flushes its buffer before it closes the descriptor.
        self._transport.close()
        self._read_transport.close()

    def abort(self) -> None:
        self._transport.abort()
        self._read_transport.close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._protocol.lost, self._read_protocol.lost)


class SerialConnection(StreamConnection):
    """A ``Connection`` over a character device (see the module docstring)."""


async def serial_connection_from_fd(
    fd: int, description: str, *, on_close: Callable[[], None] | None = None
) -> SerialConnection:
    """Build a connection over an open character-device ``fd``; the connection owns it."""
    loop = asyncio.get_running_loop()
    read_file = write_file = None
    read_transport: asyncio.ReadTransport | None = None
    try:
        _check_pollable(fd, description)
        if os.isatty(fd):
            make_raw(fd)
        write_fd = os.dup(fd)
        read_file = os.fdopen(fd, "rb", buffering=0)
        write_file = os.fdopen(write_fd, "wb", buffering=0)
        reader = asyncio.StreamReader(limit=stream_limit(), loop=loop)
        read_protocol = _ReadProtocol(reader)
        read_transport = _DrainingReadTransport(loop, read_file, read_protocol)
        write_transport, write_protocol = await loop.connect_write_pipe(_WriteProtocol, write_file)
    except BaseException:
        if read_transport is not None:
            read_transport.close()
        elif read_file is not None:
            read_file.close()
        else:
            os.close(fd)
        if write_file is not None:
            write_file.close()
        raise
    writer = _PipeWriter(write_transport, write_protocol, read_transport, read_protocol)
    return SerialConnection(reader, writer, description, on_close=on_close)


def _check_pollable(fd: int, desc: str) -> None:
    """The event loop needs epoll; devices such as /dev/null cannot be polled, and asyncio
    would otherwise fail inside a callback and leave every read waiting forever."""
    probe = select.epoll()
    try:
        probe.register(fd, select.EPOLLIN)
    except OSError as err:
        raise ConnectError(
            f"cannot use {desc}: the device does not support polling "
            f"({err.strerror or err}); it is not a serial port",
            address=desc,
        ) from err
    finally:
        probe.close()


def _open_device(path: str, desc: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise ConnectError(
            f"cannot open {desc}: no device {path} (is the virtio-serial port configured and "
            "virtio_console loaded?)",
            address=desc,
        ) from err
    except OSError as err:
        if err.errno == errno.EBUSY:
            why = f"{path} is already open (a virtio-serial port takes one user at a time)"
        elif err.errno == errno.EACCES:
            why = f"permission denied on {path}"
        else:
            why = err.strerror or str(err)
        raise ConnectError(f"cannot open {desc}: {why}", address=desc) from err


def _peer_present(fd: int) -> bool:
    """False while the other side is gone (``POLLHUP``) and nothing is left to read.

    Bytes the other side wrote before it left still count: the connection returns them,
    then end of file.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return all(
        not (events & select.POLLHUP and not events & select.POLLIN) for _, events in poller.poll(0)
    )


async def _open_connected(
    path: str,
    desc: str,
    *,
    deadline: float | None,
    stop: Callable[[], bool] = lambda: False,
    on_close: Callable[[], None] | None = None,
) -> SerialConnection:
    """Open the device and wait (polling) until its other side is present."""
    loop = asyncio.get_running_loop()
    fd = _open_device(path, desc)
    try:
        while not _peer_present(fd):
            if stop():
                raise ClosedError(f"listener {desc} is closed")
            if deadline is not None and loop.time() >= deadline:
                raise VirgaTimeoutError(
                    f"connecting to {desc} timed out: the other side of {path} is not "
                    "connected (is the host chardev open?)"
                )
            # No event announces the other side's arrival: poll the same descriptor.
            await asyncio.sleep(PEER_POLL_INTERVAL)
    except BaseException:
        os.close(fd)
        raise
    return await serial_connection_from_fd(fd, desc, on_close=on_close)


class SerialDeviceListener:
    """``listen`` on a character device: one connection at a time, reopened after close."""

    def __init__(self, path: str, description: str) -> None:
        self._path = path
        self._description = description
        self._closed = False
        self._busy = False
        self._free = asyncio.Event()
        self._free.set()
        self._lock = asyncio.Lock()

    @property
    def description(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"<SerialDeviceListener {self._description}>"

    def _release(self) -> None:
        self._busy = False
        self._free.set()

    async def accept(self) -> Connection:
        async with self._lock:
            while True:
                if self._closed:
                    raise ClosedError(f"listener {self._description} is closed")
                if not self._busy:
                    break
                self._free.clear()
                await self._free.wait()
            conn = await _open_connected(
                self._path,
                self._description,
                deadline=None,
                stop=lambda: self._closed,
                on_close=self._release,
            )
            self._busy = True
            return conn

    async def close(self) -> None:
        """Stop accepting; a connection already accepted stays open."""
        self._closed = True
        self._free.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _host_side(path: str, desc: str) -> bool:
    """True for the host side (a Unix socket or nothing yet), False for a device."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.startswith("/dev/"):
            raise ConnectError(
                f"cannot open {desc}: no device {path} (is the virtio-serial port configured "
                "and virtio_console loaded?)",
                address=desc,
            ) from None
        return True
    except OSError as err:
        raise ConnectError(f"cannot open {desc}: {err.strerror or err}", address=desc) from err
    if stat.S_ISCHR(mode):
        return False
    if stat.S_ISSOCK(mode):
        return True
    raise ConnectError(
        f"cannot use {desc}: {path} is neither a character device nor a Unix socket",
        address=desc,
    )


async def connect_serial(addr: SerialAddress, *, timeout: float | None) -> StreamConnection:
    """Open the port: the device (waiting up to ``timeout`` for its other side), or the
    host chardev's Unix socket."""
    desc = str(addr)
    if _host_side(addr.path, desc):
        return await connect_unix(UnixAddress(addr.path), timeout=timeout, description=desc)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    return await _open_connected(addr.path, desc, deadline=deadline)


async def listen_serial(
    addr: SerialAddress, *, backlog: int = 128
) -> SerialDeviceListener | QueueListener:
    """Listen on the port: the device (one connection at a time) or a Unix socket."""
    desc = str(addr)
    if _host_side(addr.path, desc):
        return await listen_unix(UnixAddress(addr.path), description=desc, backlog=backlog)
    # Fail now, not at the first accept, if the device cannot be opened at all.
    os.close(_open_device(addr.path, desc))
    return SerialDeviceListener(addr.path, desc)
