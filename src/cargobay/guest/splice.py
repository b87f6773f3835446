"""Splice two byte streams together: what one side sends, the other receives, both ways.

Standard library and virga only: the guest agent uses it for ``unix.connect`` (a yamux
stream <-> a Unix socket in the guest), and the host's Docker socket forwarder for each
client connection (a Unix socket <-> a yamux stream, or <-> another socket).

A side is anything with the small ``ByteEnd`` interface; ``StreamEnd`` adapts a virga
yamux ``Stream`` and ``SocketEnd`` an asyncio ``StreamReader``/``StreamWriter`` pair.
The rules ``splice`` keeps (the ones a transparent TCP proxy keeps, so that HTTP,
including connections upgraded or hijacked for ``docker attach``/``docker run``, passes
through untouched):

* bytes are copied as they come, in order, never parsed or buffered beyond one read;
* an end of file from one side is passed on as a half-close of the other
  (``write_eof``: a yamux FIN, ``shutdown(SHUT_WR)``), and the other direction goes on
  until it ends too: a client that closed its sending half still gets its answer;
* once both directions ended, both sides are closed;
* a failure in either direction (a reset stream, a broken socket) aborts both sides at
  once, as does cancelling ``splice``: the peer sees a reset, never a clean end.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final, Protocol

from virga.errors import VirgaError
from virga.yamux import Stream

__all__ = ["CHUNK", "ByteEnd", "SocketEnd", "SpliceResult", "StreamEnd", "splice"]

CHUNK: Final = 64 * 1024
"""The most one read takes from a side."""


class ByteEnd(Protocol):
    """One side of a splice."""

    async def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes``; ``b""`` at end of file."""
        ...

    async def write(self, data: bytes) -> None:
        """All of ``data`` (waiting for the reader: backpressure)."""
        ...

    async def write_eof(self) -> None:
        """Half-close: no more writes; reading goes on."""
        ...

    async def close(self) -> None:
        """Both directions are done: release the side."""
        ...

    async def abort(self) -> None:
        """Tear the side down at once (a reset, not an end of file); never raises."""
        ...


class StreamEnd:
    """A virga yamux ``Stream`` as a splice side."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def read(self, max_bytes: int) -> bytes:
        return await self.stream.read(max_bytes)

    async def write(self, data: bytes) -> None:
        await self.stream.write(data)

    async def write_eof(self) -> None:
        await self.stream.close()

    async def close(self) -> None:
        with contextlib.suppress(VirgaError):
            await self.stream.close()

    async def abort(self) -> None:
        with contextlib.suppress(VirgaError):
            await self.stream.reset()


class SocketEnd:
    """An asyncio stream connection (``open_unix_connection``, a server's handler)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, max_bytes: int) -> bytes:
        return await self.reader.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def write_eof(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def abort(self) -> None:
        self.writer.transport.abort()


@dataclass(slots=True)
class SpliceResult:
    """Bytes copied each way, and the failure that ended the splice (None: clean)."""

    a_to_b: int = 0
    b_to_a: int = 0
    error: BaseException | None = None


async def _pump(src: ByteEnd, dst: ByteEnd, result: SpliceResult, forward: bool) -> None:
    while data := await src.read(CHUNK):
        await dst.write(data)
        if forward:
            result.a_to_b += len(data)
        else:
            result.b_to_a += len(data)
    await dst.write_eof()


async def splice(a: ByteEnd, b: ByteEnd) -> SpliceResult:
    """Copy ``a`` -> ``b`` and ``b`` -> ``a`` until both directions ended or one failed.

    Never raises for a failing side (``result.error`` says what failed; both sides are
    aborted); cancellation aborts both sides and propagates.
    """
    result = SpliceResult()
    forward = asyncio.ensure_future(_pump(a, b, result, True))
    backward = asyncio.ensure_future(_pump(b, a, result, False))
    pumps = {forward, backward}
    try:
        while pumps:
            done, pumps = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                err = task.exception()
                if err is not None and result.error is None:
                    result.error = err
            if result.error is not None:
                break
    except asyncio.CancelledError:
        await _abort(a, b, forward, backward)
        raise
    if result.error is not None:
        await _abort(a, b, forward, backward)
        await asyncio.gather(forward, backward, return_exceptions=True)
        return result
    for side in (a, b):
        with contextlib.suppress(Exception):
            await side.close()
    return result


async def _abort(a: ByteEnd, b: ByteEnd, *tasks: asyncio.Future[None]) -> None:
    for task in tasks:
        task.cancel()
    for side in (a, b):
        with contextlib.suppress(Exception):
            await side.abort()
