"""The agent channel: the sync preamble of a host connection, and frames on request streams.

Standard library and virga only: the agent imports it inside the guest.

``AgentSync`` and ``HostSync`` are the two sides of the preamble described in
``cargobay.guest.protocol``, sans-IO; ``agent_sync`` and ``host_sync`` drive them over a
virga ``Connection``.  Each returns the connection to run yamux on: the bytes it
read past the preamble are not lost but handed back first (``BufferedConnection``).
The agent side waits as long as it takes for a host (a virtio-serial port may stay
silent for hours); the host side is bounded by its timeout and re-sends its request
(after 0.1 s, then doubling up to every ``SYNC_RESEND_INTERVAL`` seconds, and at once
when the agent says hello): see the protocol docstring for why.

``read_frame`` / ``write_frame`` move protocol frames over a virga yamux ``Stream``; a
write waits for the stream's window, so a slow reader on the other side slows the
writer down instead of making anyone buffer.
"""

from __future__ import annotations

import asyncio
import os

from cargobay.guest.protocol import (
    FRAME_HEADER,
    PROTOCOL_VERSION,
    SYNC_HELLO,
    SYNC_REPLY,
    SYNC_REQUEST,
    RequestError,
    decode_header,
    is_valid_nonce,
)
from virga.connection.base import DEFAULT_READ_SIZE, Connection
from virga.errors import ConnectionLostError, RemoteProtocolError, VirgaTimeoutError
from virga.yamux.aio import Stream

__all__ = [
    "SYNC_RESEND_INTERVAL",
    "AgentSync",
    "BufferedConnection",
    "HostSync",
    "agent_sync",
    "host_sync",
    "new_nonce",
    "read_frame",
    "sync_hello",
    "sync_reply",
    "sync_request",
    "write_frame",
]

SYNC_RESEND_INTERVAL = 1.0
SYNC_FIRST_RESEND = 0.1
# Longest line kept while looking for a sync request/reply; longer junk is dropped.
_LINE_LIMIT = 4096
_REQUEST_TOKEN = SYNC_REQUEST + b" "


class BufferedConnection:
    """A ``Connection`` that first returns ``prefix`` (bytes already read from ``conn``)."""

    def __init__(self, conn: Connection, prefix: bytes) -> None:
        self._conn = conn
        self._prefix = prefix

    @property
    def description(self) -> str:
        return self._conn.description

    def __repr__(self) -> str:
        return f"<BufferedConnection {self._conn!r} +{len(self._prefix)}>"

    def is_connected(self) -> bool:
        return self._conn.is_connected()

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._conn.read(max_bytes)

    async def read_exact(self, n: int) -> bytes:
        head = self._prefix[:n]
        self._prefix = self._prefix[n:]
        if len(head) == n:
            return head
        return head + await self._conn.read_exact(n - len(head))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.write(data)

    async def drain(self) -> None:
        await self._conn.drain()

    async def write_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._conn.write_all(data)

    async def write_eof(self) -> None:
        await self._conn.write_eof()

    async def close(self) -> None:
        await self._conn.close()


def new_nonce() -> bytes:
    return os.urandom(8).hex().encode()


def _request_nonce(line: bytes) -> bytes | None:
    """The nonce of a sync request line (junk before the token is allowed), else None."""
    at = line.rfind(_REQUEST_TOKEN)
    if at < 0:
        return None
    nonce = line[at + len(_REQUEST_TOKEN) :].strip(b"\r \t")
    return nonce if is_valid_nonce(nonce) else None


def sync_request(nonce: bytes) -> bytes:
    return b"\n" + _REQUEST_TOKEN + nonce + b"\n"


def sync_reply(nonce: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    return SYNC_REPLY + b" " + nonce + b" " + str(version).encode() + b"\n"


def sync_hello(version: int = PROTOCOL_VERSION) -> bytes:
    return SYNC_HELLO + b" " + str(version).encode() + b"\n"


class AgentSync:
    """The agent's side of the preamble, sans-IO: feed bytes, send what it returns.

    ``done`` once the first yamux byte arrived after an answered request; ``leftover``
    then holds the bytes from there on (they belong to yamux).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.nonce: bytes | None = None
        self.done = False
        self.leftover = b""

    def receive_data(self, data: bytes) -> bytes:
        """Take bytes from the host; returns the replies to send (maybe empty)."""
        if self.done:
            raise RuntimeError("the sync is over: the bytes belong to yamux")
        buf = self._buf
        buf += data
        out = bytearray()
        while buf:
            if self.nonce is not None and buf[0] == 0:
                # The first yamux byte (frame version 0): the preamble is over.
                self.done = True
                self.leftover = bytes(buf)
                buf.clear()
                break
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > _LINE_LIMIT:
                    # Junk without a newline: keep only what could still start a request.
                    del buf[: -len(_REQUEST_TOKEN) - 64]
                break
            found = _request_nonce(bytes(buf[:end]))
            del buf[: end + 1]
            if found is not None and found != self.nonce:
                self.nonce = found
                out += sync_reply(found)
        return bytes(out)


class HostSync:
    """The host's side of the preamble, sans-IO: send ``request``, feed what comes back.

    ``version`` is set (and ``leftover`` holds the bytes after the reply line) once the
    reply carrying this nonce arrived.  ``hello`` turns true when the agent announced
    itself (the caller re-sends ``request`` then, and clears it).  ``RemoteProtocolError``
    for a malformed reply.
    """

    def __init__(self, nonce: bytes | None = None) -> None:
        self.nonce = nonce or new_nonce()
        if not is_valid_nonce(self.nonce):
            raise ValueError(f"invalid sync nonce {self.nonce!r}")
        self.request = sync_request(self.nonce)
        self._marker = SYNC_REPLY + b" " + self.nonce + b" "
        self._buf = bytearray()
        self.version: int | None = None
        self.leftover = b""
        self.hello = False

    def receive_data(self, data: bytes) -> None:
        if self.version is not None:
            raise RuntimeError("the sync is over: the bytes belong to yamux")
        buf = self._buf
        buf += data
        marker = self._marker
        at = buf.find(marker)
        if at < 0:
            hello = buf.rfind(SYNC_HELLO)
            if hello >= 0:
                self.hello = True
                del buf[: hello + len(SYNC_HELLO)]
            if len(buf) > _LINE_LIMIT:
                del buf[: -max(len(marker), len(SYNC_HELLO))]
            return
        end = buf.find(b"\n", at)
        if end < 0:
            if len(buf) - at > len(marker) + 16:
                raise RemoteProtocolError(f"malformed sync reply {bytes(buf[at:])[:100]!r}")
            return
        version = bytes(buf[at + len(marker) : end]).strip()
        if not version.isdigit() or len(version) > 9:
            raise RemoteProtocolError(f"malformed sync reply {bytes(buf[at:end])!r}")
        self.version = int(version)
        self.leftover = bytes(buf[end + 1 :])
        buf.clear()


async def agent_sync(conn: Connection) -> tuple[Connection, bytes]:
    """Wait for a host's sync request, answer it, and return where yamux starts.

    Returns ``(connection, nonce)``.  Raises ``ConnectionLostError`` if the host goes
    away first.  See the protocol docstring for the rules on repeated requests.
    """
    state = AgentSync()
    while not state.done:
        data = await conn.read()
        if not data:
            raise ConnectionLostError(f"{conn.description}: the host left during the sync")
        reply = state.receive_data(data)
        if reply:
            await conn.write_all(reply)
    assert state.nonce is not None
    return BufferedConnection(conn, state.leftover), state.nonce


async def host_sync(
    conn: Connection,
    *,
    timeout: float | None,
    nonce: bytes | None = None,
    resend_interval: float = SYNC_RESEND_INTERVAL,
    first_resend: float = SYNC_FIRST_RESEND,
) -> tuple[Connection, int]:
    """Sync with the agent on ``conn``: returns ``(connection, agent protocol version)``.

    Raises ``VirgaTimeoutError`` when no reply came within ``timeout`` seconds,
    ``ConnectionLostError`` if the connection ends, ``RemoteProtocolError`` for a
    malformed reply.
    """
    loop = asyncio.get_running_loop()
    state = HostSync(nonce)
    deadline = None if timeout is None else loop.time() + timeout
    next_send = loop.time()
    # Re-send soon at first, then every ``resend_interval``: a request can be lost when
    # it breaks a stale session the agent still runs (a host that reconnects at once on
    # a serial port), and repeats cost nothing (the agent drops them).
    interval = min(first_resend, resend_interval)
    while state.version is None:
        now = loop.time()
        if deadline is not None and now >= deadline:
            raise VirgaTimeoutError(
                f"{conn.description}: the guest agent did not answer the sync request "
                f"within {timeout}s (is the guest booted and the agent running?)"
            )
        if now >= next_send:
            await conn.write_all(state.request)
            next_send = now + interval
            interval = min(interval * 2, resend_interval)
        wait_until = next_send if deadline is None else min(next_send, deadline)
        try:
            async with asyncio.timeout_at(wait_until):
                data = await conn.read()
        except TimeoutError:
            continue
        if not data:
            raise ConnectionLostError(
                f"{conn.description}: the connection ended before the agent answered the sync"
            )
        try:
            state.receive_data(data)
        except RemoteProtocolError as err:
            raise RemoteProtocolError(f"{conn.description}: {err}") from err
        if state.hello:
            # The agent just opened the channel: what we sent before may be lost.
            state.hello = False
            next_send = loop.time()
    leftover = state.leftover
    return (BufferedConnection(conn, leftover) if leftover else conn), state.version


async def _read_full(stream: Stream, n: int) -> bytes:
    """``n`` bytes, or fewer only if the peer half-closed first."""
    data = await stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = await stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


async def read_frame(stream: Stream) -> tuple[bytes, bytes] | None:
    """The next ``(kind, payload)``, or None when the peer half-closed between frames.

    ``RequestError`` (protocol) for an invalid header or a stream that ends mid-frame;
    virga errors when the stream is reset or the session ends.
    """
    header = await _read_full(stream, FRAME_HEADER.size)
    if not header:
        return None
    if len(header) < FRAME_HEADER.size:
        raise RequestError("protocol", "the stream ended inside a frame header")
    kind, length = decode_header(header)
    if not length:
        return kind, b""
    payload = await _read_full(stream, length)
    if len(payload) < length:
        raise RequestError("protocol", "the stream ended inside a frame")
    return kind, payload


async def write_frame(stream: Stream, kind: bytes, payload: bytes = b"") -> None:
    """Send one frame (one write, so frames of concurrent writers never interleave)."""
    await stream.write(FRAME_HEADER.pack(kind, len(payload)) + payload)
