"""The one byte-stream interface every transport runs on, and its asyncio implementation.

A ``Connection`` is an ordered, reliable, bidirectional byte stream: AF_VSOCK, hybrid
vsock, a virtio-serial port, a Unix or a TCP socket all look the same above this layer.
A ``Listener`` hands out accepted connections.

``StreamConnection`` wraps an asyncio ``StreamReader`` and a writer (an asyncio
``StreamWriter``, or anything shaped like one: see ``ByteWriter``; the virtio-serial
connection brings its own).  Invariants: ``read`` returns ``b""`` only at end of file;
every OS error after the connection is up becomes ``ConnectionLostError`` (cause kept);
``close`` is idempotent.  ``read_line``/``read_until`` take bytes out of the reader's
buffer up to a separator and leave everything after it buffered, so a handshake line
(hybrid vsock's ``OK <port>``) never swallows the payload that follows it.

``QueueListener`` turns an ``asyncio.Server`` callback into ``accept()``; closing it wakes
every pending ``accept`` with ``ClosedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from virga.errors import ClosedError, ConnectionLostError

__all__ = [
    "DEFAULT_READ_SIZE",
    "ByteWriter",
    "Connection",
    "Listener",
    "QueueListener",
    "StreamConnection",
]

DEFAULT_READ_SIZE = 256 * 1024
_STREAM_LIMIT = 1 << 20
# How long ``close`` lets queued bytes drain before it drops them (a peer that stopped
# reading must not make close hang forever).
CLOSE_FLUSH_TIMEOUT = 5.0


@runtime_checkable
class Connection(Protocol):
    """An established byte stream (the seed's ``VsockConnection``)."""

    @property
    def description(self) -> str:
        """Where this connection goes, for logs and errors (an address string)."""
        ...

    def is_connected(self) -> bool: ...

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        """Up to ``max_bytes``; ``b""`` at end of file."""
        ...

    async def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or ``ConnectionLostError`` if the stream ends first."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes for sending without waiting; follow with ``drain``."""
        ...

    async def drain(self) -> None:
        """Wait until the send buffer is below its high-water mark."""
        ...

    async def write_all(self, data: bytes | bytearray | memoryview) -> None:
        """``write`` then ``drain``."""
        ...

    async def write_eof(self) -> None:
        """Half-close the sending direction where the medium supports it."""
        ...

    async def close(self) -> None:
        """Close both directions; idempotent."""
        ...


@runtime_checkable
class Listener(Protocol):
    """Accepts connections on an address."""

    @property
    def description(self) -> str: ...

    async def accept(self) -> Connection: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ByteWriter(Protocol):
    """The part of ``asyncio.StreamWriter`` that ``StreamConnection`` uses."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def is_closing(self) -> bool: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


def _abort(writer: ByteWriter) -> None:
    """Drop unsent bytes and close now (after a flush that did not finish)."""
    if isinstance(writer, asyncio.StreamWriter):
        writer.transport.abort()
        return
    abort = getattr(writer, "abort", None)
    if callable(abort):
        abort()


class StreamConnection:
    """A ``Connection`` over an asyncio ``StreamReader`` and a ``ByteWriter``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: ByteWriter,
        description: str,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._description = description
        self._closed = False
        self._on_close = on_close

    @property
    def description(self) -> str:
        return self._description

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._description} {state}>"

    def is_connected(self) -> bool:
        return not self._closed and not self._writer.is_closing()

    def _lost(self, err: BaseException) -> ConnectionLostError:
        return ConnectionLostError(f"connection {self._description} failed: {err}")

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"connection {self._description} is closed")

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        self._check_open()
        try:
            return await self._reader.read(max_bytes)
        except OSError as err:
            raise self._lost(err) from err

    async def read_exact(self, n: int) -> bytes:
        self._check_open()
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as err:
            raise ConnectionLostError(
                f"connection {self._description} ended after {len(err.partial)} of {n} bytes"
            ) from err
        except OSError as err:
            raise self._lost(err) from err

    async def read_line(self, limit: int, separator: bytes = b"\n") -> bytes:
        """Read through ``separator``, but never more than ``limit`` bytes.

        Returns the bytes read: ending with ``separator``, or without it when the stream
        ended or ``limit`` bytes came first (the caller decides what that means, and can
        quote the bytes in its error).  Bytes after the separator stay buffered for
        ``read``.  It takes one byte at a time from the reader's buffer, which is cheap
        for the short handshake lines it is meant for.
        """
        self._check_open()
        if not separator:
            raise ValueError("separator must not be empty")
        line = bytearray()
        try:
            while len(line) < limit:
                byte = await self._reader.read(1)
                if not byte:
                    break
                line += byte
                if line.endswith(separator):
                    break
        except OSError as err:
            raise self._lost(err) from err
        return bytes(line)

    async def read_until(self, separator: bytes, limit: int) -> bytes:
        """Read through ``separator`` (included); bytes after it stay buffered for ``read``.

        ``ConnectionLostError`` if the stream ends, or ``limit`` bytes pass, first.
        """
        line = await self.read_line(limit, separator)
        if line.endswith(separator):
            return line
        if len(line) >= limit:
            raise ConnectionLostError(
                f"connection {self._description}: no {separator!r} within {limit} bytes"
            )
        raise ConnectionLostError(
            f"connection {self._description} ended before {separator!r} (got {line!r})"
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._writer.is_closing():
            raise ClosedError(f"connection {self._description} is closed")
        self._writer.write(data)

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as err:
            # RuntimeError: the transport was closed under drain (asyncio's own wording).
            raise self._lost(err) from err

    async def write_all(self, data: bytes | bytearray | memoryview) -> None:
        self.write(data)
        await self.drain()

    async def write_eof(self) -> None:
        self._check_open()
        if self._writer.can_write_eof():
            try:
                self._writer.write_eof()
            except OSError as err:
                raise self._lost(err) from err

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
            waiter = asyncio.ensure_future(self._writer.wait_closed())
            # Retrieve its outcome even if we stop waiting (no "exception never retrieved").
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                await asyncio.wait_for(asyncio.shield(waiter), CLOSE_FLUSH_TIMEOUT)
            except TimeoutError:
                _abort(self._writer)
            except (OSError, RuntimeError):
                pass
        finally:
            if self._on_close is not None:
                self._on_close()


class QueueListener:
    """A ``Listener`` fed by an ``asyncio.Server`` callback; accepted streams wait in a queue."""

    def __init__(self, description: str, *, backlog: int = 128) -> None:
        self._description = description
        # ``None`` is the close sentinel; an ``accept`` that takes it puts it back for the next.
        self._queue: asyncio.Queue[Connection | None] = asyncio.Queue(backlog)
        self._server: asyncio.Server | None = None
        self._closed = False
        self._cleanup: list[Callable[[], None]] = []
        self.wrap: Callable[[StreamConnection], Awaitable[Connection]] | None = None

    @property
    def description(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"<Listener {self._description}>"

    def attach(
        self,
        server: asyncio.Server,
        *,
        cleanup: Callable[[], None] | None = None,
        description: str | None = None,
    ) -> None:
        """Bind the server.  ``description`` replaces the one given at construction (the
        real port of ``tcp:HOST:0`` is known only once the server is bound)."""
        self._server = server
        if description is not None:
            self._description = description
        if cleanup is not None:
            self._cleanup.append(cleanup)

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The ``asyncio.start_server`` callback."""
        peer = writer.get_extra_info("peername")
        desc = f"{self._description} <- {peer}" if peer else self._description
        stream = StreamConnection(reader, writer, desc)
        conn: Connection = stream
        if self.wrap is not None:
            try:
                conn = await self.wrap(stream)
            except Exception:
                writer.close()
                return
        if self._closed:
            await conn.close()
            return
        try:
            self._queue.put_nowait(conn)
        except asyncio.QueueFull:
            await conn.close()

    async def accept(self) -> Connection:
        if self._closed:
            raise ClosedError(f"listener {self._description} is closed")
        conn = await self._queue.get()
        if conn is None:
            self._queue.put_nowait(None)
            raise ClosedError(f"listener {self._description} is closed")
        return conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        while not self._queue.empty():
            conn = self._queue.get_nowait()
            if conn is not None:
                await conn.close()
        for fn in self._cleanup:
            with contextlib.suppress(OSError):
                fn()
        # Wake pending accepts; the queue was just emptied, so there is room.
        self._queue.put_nowait(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def stream_limit() -> int:
    """The StreamReader buffer limit used for every connection."""
    return _STREAM_LIMIT
