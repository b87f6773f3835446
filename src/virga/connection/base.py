"""The one byte-stream interface every transport runs on, and its asyncio implementation.

A ``Connection`` is an ordered, reliable, bidirectional byte stream: AF_VSOCK, hybrid
vsock, a virtio-serial port, a Unix or a TCP socket all look the same above this layer.
A ``Listener`` hands out accepted connections.

``StreamConnection`` wraps an asyncio ``StreamReader``/``StreamWriter`` pair.  Invariants:
``read`` returns ``b""`` only at end of file; every OS error after the connection is up
becomes ``ConnectionLostError`` (cause kept); ``close`` is idempotent.
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
    "Connection",
    "Listener",
    "QueueListener",
    "StreamConnection",
]

DEFAULT_READ_SIZE = 256 * 1024
_STREAM_LIMIT = 1 << 20


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


class StreamConnection:
    """A ``Connection`` over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
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
        return f"<StreamConnection {self._description} {state}>"

    def is_connected(self) -> bool:
        return not self._closed and not self._writer.is_closing()

    def _lost(self, err: BaseException) -> ConnectionLostError:
        return ConnectionLostError(f"connection {self._description} failed: {err}")

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        if self._closed:
            raise ClosedError(f"connection {self._description} is closed")
        try:
            return await self._reader.read(max_bytes)
        except OSError as err:
            raise self._lost(err) from err

    async def read_exact(self, n: int) -> bytes:
        if self._closed:
            raise ClosedError(f"connection {self._description} is closed")
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as err:
            raise ConnectionLostError(
                f"connection {self._description} ended after {len(err.partial)} of {n} bytes"
            ) from err
        except OSError as err:
            raise self._lost(err) from err

    async def read_until(self, separator: bytes, limit: int) -> bytes:
        """Read through ``separator`` (included); bytes after it stay buffered for ``read``."""
        try:
            line = await self._reader.readuntil(separator)
        except asyncio.IncompleteReadError as err:
            raise ConnectionLostError(
                f"connection {self._description} ended before {separator!r}"
            ) from err
        except asyncio.LimitOverrunError as err:
            raise ConnectionLostError(
                f"connection {self._description}: no {separator!r} within {limit} bytes"
            ) from err
        except OSError as err:
            raise self._lost(err) from err
        if len(line) > limit:
            raise ConnectionLostError(
                f"connection {self._description}: no {separator!r} within {limit} bytes"
            )
        return line

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
        if self._writer.can_write_eof():
            try:
                self._writer.write_eof()
            except OSError as err:
                raise self._lost(err) from err

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self._writer.wait_closed()
        if self._on_close is not None:
            self._on_close()


class QueueListener:
    """A ``Listener`` fed by an ``asyncio.Server`` callback; accepted streams wait in a queue."""

    def __init__(self, description: str, *, backlog: int = 128) -> None:
        self._description = description
        self._queue: asyncio.Queue[Connection] = asyncio.Queue(backlog)
        self._server: asyncio.Server | None = None
        self._closed = False
        self._cleanup: list[Callable[[], None]] = []
        self.wrap: Callable[[StreamConnection], Awaitable[Connection]] | None = None

    @property
    def description(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"<Listener {self._description}>"

    def attach(self, server: asyncio.Server, *, cleanup: Callable[[], None] | None = None) -> None:
        self._server = server
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
        return await self._queue.get()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        while not self._queue.empty():
            await self._queue.get_nowait().close()
        for fn in self._cleanup:
            with contextlib.suppress(OSError):
                fn()

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
