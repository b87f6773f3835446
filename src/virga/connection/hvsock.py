"""Hybrid vsock (Firecracker, Cloud Hypervisor): vsock ports reached through a Unix socket.

The VMM exposes the guest's vsock device as one Unix socket, ``UDS_PATH``:

* host -> guest: connect to ``UDS_PATH``, send ``CONNECT <port>\\n``; the VMM answers
  ``OK <host_port>\\n`` (``host_port`` is the ephemeral port it gave the host side, from
  2**30 up) and from then on the socket carries the guest stream.  If no guest listens
  on ``port``, Firecracker closes the socket without a word.
* guest -> host: when the guest connects to host port ``P``, the VMM connects to the
  Unix socket ``UDS_PATH_P``, so a host server listens there.

The reply is read with ``StreamConnection.read_line``, which stops at the newline: guest
bytes that arrive in the same segment as ``OK`` stay buffered and are what the first
``read`` of the connection returns.  One timeout covers connect, request and reply.

``HybridVsockMux`` is the VMM side of the same protocol, for hosts without a VMM (tests,
the demo, a QEMU backend bridging virtio-serial): it listens on ``UDS_PATH``, answers
``CONNECT`` for ports that have a registered handler, and can dial ``UDS_PATH_P`` on
behalf of a guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Self

from virga.address import HybridVsockAddress, UnixAddress
from virga.connection.base import (
    ByteWriter,
    Connection,
    QueueListener,
    StreamConnection,
    stream_limit,
)
from virga.connection.net import (
    connect_unix,
    listen_unix,
    open_unix_streams,
    remove_stale_socket,
)
from virga.errors import ClosedError, ConnectError, ConnectionLostError, VirgaTimeoutError

__all__ = [
    "FIRST_HOST_PORT",
    "HybridVsockConnection",
    "HybridVsockHandler",
    "HybridVsockMux",
    "connect_hybrid_vsock",
    "listen_hybrid_vsock",
]

_log = logging.getLogger(__name__)

# "OK 4294967295\n" is 14 bytes and "CONNECT 4294967295\n" 19; anything much longer is not
# the protocol, and bounding the line keeps a wrong peer from making us buffer forever.
REPLY_LIMIT: Final = 32
REQUEST_LIMIT: Final = 32
FIRST_HOST_PORT: Final = 1 << 30
_U32_MAX: Final = 0xFFFFFFFF

HybridVsockHandler = Callable[[Connection], Awaitable[None]]


class HybridVsockConnection(StreamConnection):
    """A host-initiated hybrid vsock stream; ``local_port`` is the port the VMM answered."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: ByteWriter,
        description: str,
        *,
        local_port: int,
    ) -> None:
        super().__init__(reader, writer, description)
        self._local_port = local_port

    @property
    def local_port(self) -> int:
        """The host-side vsock port the VMM allocated (``OK <local_port>``)."""
        return self._local_port


def _decimal_u32(text: bytes) -> int | None:
    if not text or len(text) > 10 or not text.isdigit():
        return None
    value = int(text)
    return value if value <= _U32_MAX else None


def parse_ok_reply(line: bytes) -> int | None:
    """The port of an ``OK <port>\\n`` line, or ``None`` if the line is anything else."""
    if not (line.startswith(b"OK ") and line.endswith(b"\n")):
        return None
    return _decimal_u32(line[3:-1])


def parse_connect_request(line: bytes) -> int | None:
    """The port of a ``CONNECT <port>\\n`` line, or ``None`` if the line is anything else."""
    if not (line.startswith(b"CONNECT ") and line.endswith(b"\n")):
        return None
    return _decimal_u32(line[8:-1])


def _reply_error(addr: HybridVsockAddress, reply: bytes) -> ConnectError:
    desc = str(addr)
    if not reply:
        why = (
            f"the VMM closed the connection without answering CONNECT {addr.port} "
            f"(no guest listener on port {addr.port}?)"
        )
    elif not reply.endswith(b"\n") and len(reply) >= REPLY_LIMIT:
        why = (
            f"no reply line within {REPLY_LIMIT} bytes, got {reply!r} "
            "(not a hybrid vsock socket?)"
        )
    elif not reply.endswith(b"\n"):
        why = (
            f"the VMM closed the connection in the middle of its reply {reply!r} "
            f"to CONNECT {addr.port}"
        )
    else:
        why = f"unexpected reply {reply!r} to CONNECT {addr.port} (expected 'OK <port>')"
    return ConnectError(f"cannot connect to {desc}: {why}", address=desc)


async def connect_hybrid_vsock(
    addr: HybridVsockAddress, *, timeout: float | None
) -> HybridVsockConnection:
    """Connect to guest port ``addr.port`` through the VMM's socket ``addr.uds_path``."""
    desc = str(addr)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await open_unix_streams(
                UnixAddress(addr.uds_path), timeout=None, description=desc
            )
            handshake = StreamConnection(reader, writer, desc)
            try:
                await handshake.write_all(f"CONNECT {addr.port}\n".encode("ascii"))
                reply = await handshake.read_line(REPLY_LIMIT)
            except ConnectionLostError as err:
                raise ConnectError(
                    f"cannot connect to {desc}: the VMM dropped the connection during the "
                    f"handshake ({err}); no guest listener on port {addr.port}?",
                    address=desc,
                ) from err
            port = parse_ok_reply(reply)
            if port is None:
                raise _reply_error(addr, reply)
            # Same streams: whatever followed the OK line is still in ``reader``'s buffer.
            return HybridVsockConnection(reader, writer, desc, local_port=port)
    except TimeoutError as err:
        waited_for = "the VMM's answer to CONNECT" if writer is not None else "the VMM's socket"
        if writer is not None:
            writer.close()
        raise VirgaTimeoutError(
            f"connecting to {desc} timed out after {timeout}s waiting for {waited_for}"
        ) from err
    except BaseException:
        if writer is not None:
            writer.close()
        raise


async def listen_hybrid_vsock(addr: HybridVsockAddress, *, backlog: int = 128) -> QueueListener:
    """Accept guest-initiated connections to host port ``addr.port`` (on ``UDS_PATH_<port>``)."""
    return await listen_unix(
        UnixAddress(addr.listen_path), description=str(addr), backlog=backlog
    )


class HybridVsockMux:
    """The VMM side of hybrid vsock: answers ``CONNECT <port>`` on ``uds_path``.

    ``register(port, handler)`` makes ``port`` connectable; each accepted connection is
    answered ``OK <n>`` (``n`` counts up from 2**30, as Firecracker allocates host ports)
    before ``handler(connection)`` starts, and closed when the handler returns.  A
    ``CONNECT`` for an unregistered port is closed without a reply and a malformed or
    missing request line is closed too, as Firecracker does.  ``close()`` stops listening,
    cancels running handlers and removes the socket file.
    """

    def __init__(self, uds_path: str, *, handshake_timeout: float = 5.0) -> None:
        self._path = uds_path
        self._handshake_timeout = handshake_timeout
        self._handlers: dict[int, HybridVsockHandler] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_port = FIRST_HOST_PORT
        self._closed = False
        self._inode: int | None = None

    @property
    def path(self) -> str:
        return self._path

    def address(self, port: int) -> HybridVsockAddress:
        """The ``hvsock:`` address a host uses to reach ``port`` through this mux."""
        return HybridVsockAddress(self._path, port)

    def __repr__(self) -> str:
        return f"<HybridVsockMux {self._path} ports={sorted(self._handlers)}>"

    def register(self, port: int, handler: HybridVsockHandler) -> None:
        """Accept ``CONNECT port`` and hand each such connection to ``handler``."""
        if not 0 <= port <= _U32_MAX:
            raise ValueError(f"vsock port {port} out of range")
        self._handlers[port] = handler

    def unregister(self, port: int) -> None:
        self._handlers.pop(port, None)

    async def start(self) -> Self:
        if self._closed:
            raise ClosedError(f"hybrid vsock mux {self._path} is closed")
        if self._server is not None:
            return self
        remove_stale_socket(self._path, f"hybrid vsock mux {self._path}")
        try:
            self._server = await asyncio.start_unix_server(
                self._on_client, self._path, limit=stream_limit()
            )
        except OSError as err:
            raise ConnectError(
                f"hybrid vsock mux cannot listen on {self._path}: {err.strerror or err}",
                address=self._path,
            ) from err
        self._inode = os.lstat(self._path).st_ino
        return self

    def _allocate_port(self) -> int:
        port = self._next_port
        self._next_port = port + 1 if port < _U32_MAX else FIRST_HOST_PORT
        return port

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Serve in a task of our own: close() cancels it, and cancelling asyncio's own
        # client-callback task makes Python 3.11 log a spurious error.
        if self._closed:
            writer.close()
            return
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = StreamConnection(reader, writer, f"hvsock mux {self._path}")
        try:
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    line = await conn.read_line(REQUEST_LIMIT)
            except (TimeoutError, ClosedError):
                return
            port = parse_connect_request(line)
            handler = self._handlers.get(port) if port is not None else None
            if port is None or handler is None or self._closed:
                _log.debug("hvsock mux %s: refusing request %r", self._path, line)
                return
            host_port = self._allocate_port()
            conn = StreamConnection(
                reader, writer, f"hvsock mux {self._path} port {port} <- host port {host_port}"
            )
            try:
                await conn.write_all(f"OK {host_port}\n".encode("ascii"))
            except ClosedError:
                return
            try:
                await handler(conn)
            except Exception:
                _log.exception("hvsock mux %s: handler for port %d failed", self._path, port)
        finally:
            await conn.close()

    async def open_from_guest(
        self, port: int, *, timeout: float | None = 10.0
    ) -> StreamConnection:
        """Forward a guest-initiated connection to host port ``port``, as the VMM does:
        connect to ``UDS_PATH_<port>`` and return the stream standing for the guest's end."""
        addr = HybridVsockAddress(self._path, port)
        return await connect_unix(
            UnixAddress(addr.listen_path),
            timeout=timeout,
            description=f"hvsock guest -> {addr.listen_path}",
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._inode is not None:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(self._path)
                if stat.S_ISSOCK(st.st_mode) and st.st_ino == self._inode:
                    os.unlink(self._path)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
