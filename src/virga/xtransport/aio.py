"""A thin asyncio adapter over the sans-IO xtransport core: whole messages on a ``Connection``.

``XTransportChannel(conn, config)`` gives ``await send(msg)``, ``await recv() -> bytes`` and
``await close()``.  All protocol decisions live in ``XTransportConnection``; this module
only moves bytes and wakes waiters.

How it runs:

* One reader task (started by the first ``send`` or ``recv``) reads the connection, feeds
  the protocol and queues whole messages for ``recv``.  At most ``INBOX_LIMIT`` messages
  wait; then the reader stops reading, so a peer that outpaces us is held back by the
  byte stream's own flow control.  Acks the protocol owes are written by the reader as
  soon as it has decoded the frames they acknowledge.
* ``send`` holds a lock for the whole message, so frames of two messages never
  interleave.  Every ``data_to_send`` result is written before the next ``await``, so
  frames reach the wire in the order the protocol numbered them, Acks included.
* With ``wait_for_ack``, at most ``config.ack_window`` frames are in flight (1 is the
  crate's stop-and-wait) and ``send`` returns once the peer has acknowledged every frame
  of the message.  If the peer makes no progress (no Ack, or a full send buffer) for
  ``config.ack_timeout`` seconds, ``send`` raises ``VirgaTimeoutError``.

A channel cannot recover from a broken stream: a protocol error from the peer, the
peer's EOF, an Ack timeout, or a ``send`` cancelled after part of its message was
written leaves it failed and closes the connection; later calls raise that error (after
``recv`` has returned the messages that arrived before it).  ``close`` makes every later
call raise ``ClosedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from types import TracebackType
from typing import Self

from virga.connection.base import DEFAULT_READ_SIZE, Connection
from virga.errors import (
    ClosedError,
    ConnectionLostError,
    LocalProtocolError,
    VirgaTimeoutError,
)
from virga.xtransport.protocol import (
    AckReceived,
    ConnectionClosed,
    MessageReceived,
    NeedData,
    XTransportConfig,
    XTransportConnection,
)

__all__ = ["INBOX_LIMIT", "SEND_BATCH_FRAMES", "ChannelState", "XTransportChannel"]

log = logging.getLogger(__name__)

INBOX_LIMIT = 8  # whole messages decoded but not yet returned by recv()
SEND_BATCH_FRAMES = 64  # frames per write when not waiting for Acks (256 KiB at 4 KiB frames)


class ChannelState(enum.Enum):
    OPEN = "open"
    FAILED = "failed"  # the stream broke; see the stored error
    CLOSED = "closed"  # close() was called


class XTransportChannel:
    """Send and receive whole messages with xtransport framing over one ``Connection``."""

    def __init__(self, conn: Connection, config: XTransportConfig | None = None) -> None:
        self._conn = conn
        self._config = config or XTransportConfig()
        self._proto = XTransportConnection(self._config)
        self._state = ChannelState.OPEN
        self._error: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._inbox: deque[bytes] = deque()
        self._readable = asyncio.Event()  # set: inbox non-empty or the channel is done
        self._space = asyncio.Event()  # set: the inbox has room
        self._space.set()
        self._ack_progress = asyncio.Event()  # set: an Ack arrived or the channel is done
        self._send_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<XTransportChannel {self._conn.description} {self._state.value}>"

    @property
    def description(self) -> str:
        return self._conn.description

    @property
    def config(self) -> XTransportConfig:
        return self._config

    @property
    def state(self) -> ChannelState:
        return self._state

    @property
    def connection(self) -> Connection:
        return self._conn

    def is_open(self) -> bool:
        return self._state is ChannelState.OPEN

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- public operations ---------------------------------------------------------------

    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Send one message; with ``wait_for_ack``, return once the peer acknowledged it all."""
        self._check_usable()
        self._start_reader()
        async with self._send_lock:
            self._check_usable()
            proto = self._proto
            proto.queue_message(message)  # LocalProtocolError (e.g. too big) leaves us usable
            try:
                if self._config.wait_for_ack:
                    await self._send_acked()
                else:
                    while proto.sending:
                        self._conn.write(proto.data_to_send(SEND_BATCH_FRAMES))
                        await self._conn.drain()
                        self._check_usable()
            except BaseException as err:
                if proto.sending and self._state is ChannelState.OPEN:
                    # Part of the message is on the wire; the peer would take our next
                    # frames as its continuation.  The stream is unusable.
                    self._abort_nowait(
                        LocalProtocolError(
                            f"xtransport channel {self.description} broken: a send was "
                            f"interrupted mid-message ({type(err).__name__})"
                        )
                    )
                raise

    async def recv(self) -> bytes:
        """The next whole message from the peer.

        Raises ``ConnectionLostError`` once the peer has closed the stream and every
        message that arrived before has been returned, ``RemoteProtocolError`` after bad
        input, ``ClosedError`` after ``close``.
        """
        self._start_reader()
        while True:
            if self._state is ChannelState.CLOSED:
                raise ClosedError(f"xtransport channel {self.description} is closed")
            if self._inbox:
                message = self._inbox.popleft()
                if len(self._inbox) < INBOX_LIMIT:
                    self._space.set()
                if not self._inbox and self._state is ChannelState.OPEN:
                    self._readable.clear()
                return message
            if self._error is not None:
                raise self._error
            await self._readable.wait()

    async def close(self) -> None:
        """Close the channel and its connection; idempotent."""
        if self._state is ChannelState.CLOSED:
            return
        self._state = ChannelState.CLOSED
        self._proto.close()
        self._inbox.clear()
        self._wake_all()
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.wait([reader])
        if self._closing is not None:
            await asyncio.wait([self._closing])
        await self._conn.close()

    # --- internals -----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._state is ChannelState.CLOSED:
            raise ClosedError(f"xtransport channel {self.description} is closed")
        if self._error is not None:
            raise self._error

    def _wake_all(self) -> None:
        self._readable.set()
        self._space.set()
        self._ack_progress.set()

    def _fail(self, err: BaseException) -> None:
        """Record the first terminal error and wake everyone waiting."""
        if self._error is None and self._state is ChannelState.OPEN:
            self._error = err
            self._state = ChannelState.FAILED
            self._proto.close()
        self._wake_all()

    def _abort_nowait(self, err: BaseException) -> None:
        """Fail the channel and close the connection in the background (usable in cleanup)."""
        self._fail(err)
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close_quietly())

    async def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._conn.close()

    def start(self) -> None:
        """Start reading now (otherwise the first ``send``/``recv`` does), so a lost peer is
        noticed even by a channel that is idle."""
        self._start_reader()

    def _start_reader(self) -> None:
        if self._reader is None and self._state is ChannelState.OPEN:
            self._reader = asyncio.get_running_loop().create_task(
                self._read_loop(), name=f"xtransport-reader {self.description}"
            )

    async def _send_acked(self) -> None:
        proto = self._proto
        window = self._config.ack_window
        while proto.sending:
            await self._wait_for_acks(window - 1)
            batch = min(window - proto.unacked, SEND_BATCH_FRAMES)
            self._conn.write(proto.data_to_send(batch))
            try:
                async with asyncio.timeout(self._config.ack_timeout):
                    await self._conn.drain()
            except TimeoutError as err:
                raise self._ack_timeout("the peer stopped reading") from err
            self._check_usable()
        await self._wait_for_acks(0)

    async def _wait_for_acks(self, allowed: int) -> None:
        """Wait until at most ``allowed`` frames are unacknowledged."""
        while self._proto.unacked > allowed:
            self._check_usable()
            self._ack_progress.clear()
            try:
                async with asyncio.timeout(self._config.ack_timeout):
                    await self._ack_progress.wait()
            except TimeoutError as err:
                raise self._ack_timeout("no Ack arrived") from err

    def _ack_timeout(self, what: str) -> VirgaTimeoutError:
        err = VirgaTimeoutError(
            f"xtransport send to {self.description}: {what} within {self._config.ack_timeout}s "
            f"({self._proto.unacked} frames unacknowledged); the channel is closed"
        )
        self._abort_nowait(err)
        return err

    def _flush_acks(self) -> None:
        data = self._proto.data_to_send(max_frames=0)
        if data:
            self._conn.write(data)

    async def _deliver(self, message: bytes) -> None:
        while len(self._inbox) >= INBOX_LIMIT and self._state is ChannelState.OPEN:
            self._space.clear()
            await self._space.wait()
        self._inbox.append(message)
        self._readable.set()

    async def _read_loop(self) -> None:
        try:
            await self._pump()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # every failure ends the channel; the caller sees it
            log.debug("xtransport reader for %s stopped: %r", self.description, err)
            self._fail(err)
        if self._state is ChannelState.FAILED:
            await self._close_quietly()

    async def _pump(self) -> None:
        """Read, decode and dispatch until the peer's EOF (returns) or an error (raises)."""
        proto = self._proto
        while True:
            data = await self._conn.read(DEFAULT_READ_SIZE)
            proto.receive_data(data)
            while True:
                event = proto.next_event()
                if isinstance(event, NeedData):
                    break
                if isinstance(event, MessageReceived):
                    self._flush_acks()
                    await self._deliver(event.data)
                elif isinstance(event, AckReceived):
                    self._ack_progress.set()
                elif isinstance(event, ConnectionClosed):
                    self._fail(
                        ConnectionLostError(
                            f"xtransport channel {self.description}: the peer closed the connection"
                        )
                    )
                    return
            if proto.acks_owed:
                self._flush_acks()
                await self._conn.drain()
