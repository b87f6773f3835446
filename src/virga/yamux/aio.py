"""The asyncio adapter over ``YamuxCore``: a ``Session`` on a ``Connection``, and its ``Stream``s.

All protocol decisions are the core's; this module only moves bytes, wakes tasks and
runs timers.  One reader task feeds the core and dispatches its events; writers call
the core and flush its output straight into the connection's transport (so frames are
never interleaved), then wait on ``drain`` for socket backpressure and on the stream's
send window for yamux backpressure.

Timers, as hashicorp/yamux: keepalive pings (a ping unanswered within
``connection_write_timeout`` closes the session), stream open timeout (no ACK: the peer
is unresponsive, the session is closed), stream close timeout (no FIN after ours: the
stream is reset).  Read and write deadlines are per stream, as ``net.Conn``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from types import TracebackType
from typing import Self

from virga.connection.base import DEFAULT_READ_SIZE, Connection
from virga.errors import (
    ClosedError,
    ConnectionLostError,
    RemoteProtocolError,
    SessionClosedError,
    StreamClosedError,
    StreamResetError,
    VirgaError,
    VirgaTimeoutError,
)
from virga.yamux.config import YamuxConfig
from virga.yamux.frame import GoAwayCode
from virga.yamux.session import (
    DataReceived,
    Event,
    GoAwayReceived,
    PongReceived,
    Role,
    SessionState,
    StreamEnded,
    StreamEstablished,
    StreamRequested,
    StreamReset,
    StreamState,
    WindowUpdated,
    YamuxCore,
)

__all__ = ["Session", "Stream"]

log = logging.getLogger("virga.yamux")

_WRITE_NOW = 64 * 1024
"""Queued bytes above which ``_drain`` writes at once instead of at the end of the turn."""


class Stream:
    """One yamux stream: an ordered, flow-controlled byte stream inside a session."""

    def __init__(self, session: Session, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of _chunks[0] already read
        self._eof = False  # the peer sent FIN
        self._local_closed = False
        self._error: VirgaError | None = None  # reset, or the session's end
        # Set to wake every waiting reader / the writer (data, FIN, window, error, a new
        # deadline); each re-checks its condition.  Events, so any number may wait.
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._read_deadline: float | None = None
        self._write_deadline: float | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.established = asyncio.Event()
        self._opened_at: float | None = None  # loop time of our SYN, for a first RTT sample

    def __repr__(self) -> str:
        return f"<yamux.Stream {self.stream_id} {self.state.value}>"

    @property
    def state(self) -> StreamState:
        if isinstance(self._error, StreamResetError):
            return StreamState.RESET
        return self._session._core.stream_state(self.stream_id)

    # -- deadlines ---------------------------------------------------------------------

    def set_read_deadline(self, timeout: float | None) -> None:
        """Reads fail with ``VirgaTimeoutError`` once ``timeout`` seconds from now pass."""
        self._read_deadline = None if timeout is None else self._session._loop.time() + timeout
        self._readable.set()

    def set_write_deadline(self, timeout: float | None) -> None:
        """Writes waiting on the window fail with ``VirgaTimeoutError`` after ``timeout`` s."""
        self._write_deadline = None if timeout is None else self._session._loop.time() + timeout
        self._writable.set()

    def set_deadline(self, timeout: float | None) -> None:
        self.set_read_deadline(timeout)
        self.set_write_deadline(timeout)

    async def _wait(self, wakeup: asyncio.Event, kind: str, deadline: float | None) -> None:
        wakeup.clear()  # the caller just found nothing to do: wait for the next wake-up
        if deadline is None:
            await wakeup.wait()
            return
        try:
            async with asyncio.timeout_at(deadline):
                await wakeup.wait()
        except TimeoutError as err:
            raise VirgaTimeoutError(
                f"yamux stream {self.stream_id}: {kind} deadline passed"
            ) from err

    # -- events from the session ---------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._readable.set()

    def _on_fin(self) -> None:
        self._eof = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._readable.set()

    def _on_error(self, err: VirgaError) -> None:
        if self._error is None:
            self._error = err
            if isinstance(err, StreamResetError):
                # A reset aborts both directions: unread data is dropped, reads fail now
                # (as hashicorp's ErrConnectionReset and a TCP RST).
                self._chunks.clear()
                self._offset = 0
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._readable.set()
        self._writable.set()

    def _on_window(self) -> None:
        self._writable.set()

    # -- reading ------------------------------------------------------------------------

    def _raise_read_error(self) -> None:
        err = self._error
        if isinstance(err, StreamResetError):
            raise StreamResetError(str(err)) from err
        assert err is not None
        raise SessionClosedError(
            f"yamux stream {self.stream_id}: session ended before the stream did ({err})"
        ) from err

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        """Up to ``max_bytes`` (at least 1); ``b""`` once the peer half-closed."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            if self._error is not None:
                self._raise_read_error()
            await self._wait(self._readable, "read", self._read_deadline)
        first = chunks[0]
        offset = self._offset
        available = len(first) - offset
        if available <= max_bytes:
            chunks.popleft()
            self._offset = 0
            data = first if offset == 0 else first[offset:]
        else:
            data = first[offset : offset + max_bytes]
            self._offset = offset + max_bytes
        self._session._consumed(self.stream_id, len(data))
        return data

    async def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``StreamClosedError`` if the peer half-closed first."""
        parts: list[bytes] = []
        need = n
        while need:
            data = await self.read(need)
            if not data:
                got = n - need
                raise StreamClosedError(
                    f"yamux stream {self.stream_id} ended after {got} of {n} bytes"
                )
            parts.append(data)
            need -= len(data)
        return b"".join(parts)

    async def read_all(self) -> bytes:
        """Everything until the peer's FIN."""
        parts: list[bytes] = []
        while data := await self.read():
            parts.append(data)
        return b"".join(parts)

    # -- writing ------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._error is not None:
            if isinstance(self._error, StreamResetError):
                raise StreamResetError(str(self._error)) from self._error
            raise SessionClosedError(
                f"yamux stream {self.stream_id}: session closed ({self._error})"
            ) from self._error
        if self._local_closed:
            raise StreamClosedError(f"yamux stream {self.stream_id} is closed for writing")

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for window as needed (backpressure)."""
        session = self._session
        core = session._core
        view = memoryview(data).cast("B")
        total = len(view)
        async with self._write_lock:
            sent = 0
            while sent < total or total == 0:
                self._check_writable()
                if total == 0:
                    return
                n = core.send_data(self.stream_id, view[sent:])
                if n:
                    sent += n
                    session._flush()
                    await session._drain()
                else:
                    await self._wait(self._writable, "write", self._write_deadline)

    async def close(self) -> None:
        """Half-close: send FIN.  Reading goes on until the peer's FIN."""
        if self._local_closed or self._error is not None:
            return
        self._local_closed = True
        session = self._session
        with contextlib.suppress(ClosedError):
            session._core.close_stream(self.stream_id)
        session._flush()
        session._forget_if_gone(self)
        timeout = session.config.stream_close_timeout
        if not self._eof and timeout > 0 and self._error is None:
            self._close_timer = session._loop.call_later(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if not self._eof and self._error is None:
            log.debug("yamux stream %d: no FIN within the close timeout, resetting", self.stream_id)
            self._reset("no FIN from the peer within the stream close timeout")

    async def reset(self) -> None:
        """Abort the stream in both directions (RST)."""
        self._reset("this side reset it")

    def _reset(self, why: str) -> None:
        if self._error is not None:
            return
        session = self._session
        session._core.reset_stream(self.stream_id)
        session._flush()
        session._cancel_open_timer(self.stream_id)  # its ACK, if any, will be discarded
        self._on_error(StreamResetError(f"yamux stream {self.stream_id} was reset: {why}"))
        session._forget_if_gone(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._reset(f"{type(exc).__name__} in the stream's user")
        else:
            await self.close()


class Session:
    """A yamux session over one ``Connection``.  Create with ``client`` or ``server``."""

    def __init__(self, conn: Connection, role: Role, config: YamuxConfig | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = conn
        self.config = config or YamuxConfig()
        self._core = YamuxCore(role, self.config, clock=self._loop.time)
        self._streams: dict[int, Stream] = {}
        self._accept_queue: deque[Stream] = deque()
        self._acceptable = asyncio.Event()  # set when a stream arrives or the session ends
        self._pings: dict[int, tuple[asyncio.Future[float], float]] = {}
        self._open_timers: dict[int, asyncio.TimerHandle] = {}
        self._closed = asyncio.Event()
        self.close_reason: BaseException | None = None
        self._reader = self._loop.create_task(
            self._read_loop(), name=f"yamux-reader {conn.description}"
        )
        self._keepalive: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None  # kept so it is not collected mid-way
        self._flush_pending = False
        if self.config.enable_keepalive or self.config.auto_tune_window:
            self._keepalive = self._loop.create_task(self._keepalive_loop())

    @classmethod
    def client(cls, conn: Connection, config: YamuxConfig | None = None) -> Session:
        """The session of the side that dialled: it opens odd stream ids."""
        return cls(conn, Role.CLIENT, config)

    @classmethod
    def server(cls, conn: Connection, config: YamuxConfig | None = None) -> Session:
        """The session of the side that accepted: it opens even stream ids."""
        return cls(conn, Role.SERVER, config)

    def __repr__(self) -> str:
        return (
            f"<yamux.Session {self._core.role.value} {self._conn.description} "
            f"{self.state.value} streams={len(self._streams)}>"
        )

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return SessionState.CLOSED if self._closed.is_set() else self._core.state

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def remote_goaway(self) -> int | None:
        """The code of the peer's GoAway, if it sent one."""
        return self._core.remote_goaway

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    @property
    def rtt(self) -> float | None:
        return self._core.rtt

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- plumbing --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what the core queued, coalesced per event-loop turn: an ACK, a reply and
        a FIN produced together leave in one write (on virtio-serial under TCG every
        write is a costly device round trip).  ``_drain`` writes at once when much is
        queued, so bulk transfers keep their socket backpressure."""
        if not self._flush_pending and not self._closed.is_set():
            self._flush_pending = True
            self._loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self._flush_pending = False
        out = self._core.data_to_send()
        if out and not self._closed.is_set():
            try:
                self._conn.write(out)
            except ClosedError as err:
                self._terminate(err)

    async def _drain(self) -> None:
        if self._core.bytes_pending >= _WRITE_NOW:
            self._write_out()
        try:
            async with asyncio.timeout(self.config.connection_write_timeout):
                await self._conn.drain()
        except TimeoutError as err:
            exc = VirgaTimeoutError(
                f"yamux: writing to {self._conn.description} took longer than "
                f"{self.config.connection_write_timeout}s; closing the session"
            )
            self._terminate(exc)
            raise exc from err
        except ClosedError as err:
            self._terminate(err)
            raise SessionClosedError(f"yamux session lost its connection: {err}") from err

    def _consumed(self, stream_id: int, n: int) -> None:
        self._core.consume(stream_id, n)
        self._flush()

    def _cancel_open_timer(self, stream_id: int) -> None:
        timer = self._open_timers.pop(stream_id, None)
        if timer is not None:
            timer.cancel()

    def _forget_if_gone(self, stream: Stream) -> None:
        if self._core.stream_state(stream.stream_id) is StreamState.CLOSED:
            self._streams.pop(stream.stream_id, None)

    # -- reader ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        conn = self._conn
        core = self._core
        dispatch = self._dispatch
        try:
            while True:
                data = await conn.read(DEFAULT_READ_SIZE)
                if not data:
                    raise ConnectionLostError(f"{conn.description}: the peer closed the connection")
                core.receive_data(data)
                while (event := core.next_event()) is not None:
                    dispatch(event)
                self._flush()
        except asyncio.CancelledError:
            raise
        except RemoteProtocolError as err:
            log.warning("yamux: %s: %s; sent GoAway(protocol error)", conn.description, err)
            self._flush()
            self._terminate(err)
        except ClosedError as err:
            self._terminate(err)
        except Exception as err:  # a bug here must not leave the session hanging
            log.exception("yamux: internal error on %s", conn.description)
            with contextlib.suppress(VirgaError):
                core.go_away(GoAwayCode.INTERNAL_ERROR)
            self._flush()
            self._terminate(SessionClosedError(f"yamux internal error: {err!r}"))

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_data(event.data)
        elif isinstance(event, WindowUpdated):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_window()
        elif isinstance(event, StreamRequested):
            stream = Stream(self, event.stream_id)
            self._streams[event.stream_id] = stream
            self._accept_queue.append(stream)
            self._acceptable.set()
        elif isinstance(event, StreamEstablished):
            self._cancel_open_timer(event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.established.set()
                if stream._opened_at is not None and self._core.rtt is None:
                    # SYN -> ACK bounds the round trip from above (the peer ACKs when it
                    # accepts); good enough to start window auto-tuning before any ping.
                    self._sample_rtt(self._loop.time() - stream._opened_at)
        elif isinstance(event, StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_fin()
                self._forget_if_gone(stream)
        elif isinstance(event, StreamReset):
            # A refused stream (backlog full, GoAway) is reset without ever being ACKed.
            self._cancel_open_timer(event.stream_id)
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream._on_error(
                    StreamResetError(f"yamux stream {event.stream_id} was reset by the peer")
                )
        elif isinstance(event, PongReceived):
            entry = self._pings.pop(event.opaque, None)
            if entry is not None and not entry[0].done():
                rtt = self._loop.time() - entry[1]
                self._sample_rtt(rtt)
                entry[0].set_result(rtt)
        elif isinstance(event, GoAwayReceived):
            level = logging.INFO if event.code == GoAwayCode.NORMAL else logging.WARNING
            log.log(level, "yamux: %s sent GoAway (%s)", self._conn.description, event.meaning)

    def _terminate(self, reason: BaseException) -> None:
        """End the session: fail every waiter, stop the tasks, close the connection."""
        if self._closed.is_set():
            return
        out = self._core.data_to_send()  # what is queued (a GoAway, say) still goes out
        if out:
            with contextlib.suppress(ClosedError):
                self._conn.write(out)
        self.close_reason = reason
        self._closed.set()
        self._core.close()
        err = reason if isinstance(reason, VirgaError) else SessionClosedError(str(reason))
        for stream in list(self._streams.values()):
            stream._on_error(err)
        self._streams.clear()
        self._accept_queue.clear()
        self._acceptable.set()
        for fut, _ in self._pings.values():
            if not fut.done():
                fut.set_exception(SessionClosedError(f"yamux session closed: {reason}"))
        self._pings.clear()
        for timer in self._open_timers.values():
            timer.cancel()
        self._open_timers.clear()
        current = asyncio.current_task()
        for task in (self._reader, self._keepalive):
            if task is not None and task is not current:
                task.cancel()
        self._closing = self._loop.create_task(self._conn.close())

    # -- public operations ------------------------------------------------------------------

    def _sample_rtt(self, rtt: float) -> None:
        core = self._core
        core.rtt = rtt if core.rtt is None else 0.875 * core.rtt + 0.125 * rtt

    def _check_open(self) -> None:
        if self._closed.is_set():
            reason = self.close_reason
            raise SessionClosedError(f"yamux session is closed ({reason})") from reason

    async def open_stream(self) -> Stream:
        """Open a stream.  Returns once the SYN is written; the ACK arrives later."""
        self._check_open()
        stream_id = self._core.open_stream()
        stream = Stream(self, stream_id)
        stream._opened_at = self._loop.time()
        self._streams[stream_id] = stream
        timeout = self.config.stream_open_timeout
        if timeout > 0:
            self._open_timers[stream_id] = self._loop.call_later(
                timeout, self._open_timed_out, stream_id
            )
        self._flush()
        await self._drain()
        return stream

    def _open_timed_out(self, stream_id: int) -> None:
        self._open_timers.pop(stream_id, None)
        log.warning("yamux: stream %d not acknowledged in time; closing the session", stream_id)
        self._terminate(
            VirgaTimeoutError(
                f"yamux: the peer did not acknowledge stream {stream_id} within "
                f"{self.config.stream_open_timeout}s; session closed"
            )
        )

    async def accept_stream(self) -> Stream:
        """Wait for the peer to open a stream, and acknowledge it."""
        while not self._accept_queue:
            self._check_open()
            self._acceptable.clear()
            await self._acceptable.wait()
        stream = self._accept_queue.popleft()
        if stream._error is None:
            self._core.accept_stream(stream.stream_id)
            self._flush()
        return stream

    async def ping(self, timeout: float | None = None) -> float:
        """Round-trip time of one ping, in seconds."""
        self._check_open()
        opaque = self._core.ping()
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[opaque] = (fut, self._loop.time())
        self._flush()
        limit = self.config.connection_write_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await fut
        except TimeoutError as err:
            self._pings.pop(opaque, None)
            raise VirgaTimeoutError(f"yamux: no ping reply within {limit}s") from err

    async def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Tell the peer to open no more streams; existing streams go on."""
        self._check_open()
        self._core.go_away(code)
        self._flush()
        await self._drain()

    async def close(self) -> None:
        """Send GoAway (if not sent) and close the connection; every stream ends."""
        if self._closed.is_set():
            return
        self._core.close()
        self._flush()
        self._terminate(SessionClosedError("the session was closed by this side"))
        await asyncio.wait([self._reader])
        if self._closing is not None:
            await asyncio.wait([self._closing])

    async def _keepalive_loop(self) -> None:
        interval = self.config.keepalive_interval
        if self.config.auto_tune_window:
            # Window auto-tuning needs a round-trip time on the receiving side too.
            with contextlib.suppress(VirgaError):
                await self.ping(self.config.connection_write_timeout)
        while self.config.enable_keepalive:
            await asyncio.sleep(interval)
            try:
                await self.ping(self.config.connection_write_timeout)
            except VirgaTimeoutError as err:
                log.warning("yamux: keepalive failed on %s: %s", self._conn.description, err)
                self._terminate(VirgaTimeoutError(f"yamux keepalive failed: {err}"))
                return
            except VirgaError:
                return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
