"""The yamux session as a sans-IO state machine: bytes in, events out, bytes to send.

Usage, as with h2::

    core = YamuxCore(Role.CLIENT, YamuxConfig())
    sid = core.open_stream()           # queues a SYN
    sock.send(core.data_to_send())
    core.receive_data(sock.recv(65536))
    while (event := core.next_event()) is not None:
        ...
    sock.send(core.data_to_send())     # window updates, pong replies, RSTs

Invariants kept here, and only here:

* stream ids: the client opens odd ids, the server even ids; a peer SYN with our parity,
  id 0, or an id that is still active is a protocol error;
* windows are counted per stream and direction on Data payload bytes only; a Data frame
  larger than the receive window is a protocol error; ``send_data`` never sends more than
  the peer's window;
* a window update is sent once at least half of the receive window has been consumed by
  the application (``consume``), or with a SYN/ACK;
* every protocol error queues GoAway(protocol error) and moves the session to CLOSED;
  the error is raised from ``next_event`` and every later call raises ``SessionClosedError``;
* a peer SYN beyond ``accept_backlog`` unaccepted streams, or after we sent GoAway, is
  answered with RST.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from virga.errors import (
    GoAwayError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionClosedError,
    StreamClosedError,
)
from virga.yamux.config import INITIAL_STREAM_WINDOW, YamuxConfig
from virga.yamux.frame import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    Flag,
    FrameType,
    GoAwayCode,
    encode_header,
    unpack_header,
)

__all__ = [
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "PongReceived",
    "Role",
    "SessionState",
    "StreamEnded",
    "StreamEstablished",
    "StreamRequested",
    "StreamReset",
    "StreamState",
    "WindowUpdated",
    "YamuxCore",
]

_DATA = int(FrameType.DATA)
_WINDOW_UPDATE = int(FrameType.WINDOW_UPDATE)
_PING = int(FrameType.PING)
_GO_AWAY = int(FrameType.GO_AWAY)
_SYN = int(Flag.SYN)
_ACK = int(Flag.ACK)
_FIN = int(Flag.FIN)
_RST = int(Flag.RST)
_COMPACT_AT = 1 << 20


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class SessionState(enum.Enum):
    OPEN = "open"
    GOING_AWAY = "going-away"  # GoAway sent or received: no new streams that way
    CLOSED = "closed"


class StreamState(enum.Enum):
    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    LOCAL_CLOSE = "local-close"  # we sent FIN
    REMOTE_CLOSE = "remote-close"  # peer sent FIN
    CLOSED = "closed"
    RESET = "reset"


# Events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRequested:
    """The peer opened a stream; accept it with ``accept_stream``."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEstablished:
    """The peer acknowledged a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): no more data will arrive."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset the stream (RST)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer granted more send window on a stream."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    code: int

    @property
    def meaning(self) -> str:
        try:
            return GoAwayCode(self.code).meaning
        except ValueError:
            return f"unknown code {self.code}"


Event = (
    StreamRequested
    | StreamEstablished
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | PongReceived
    | GoAwayReceived
)


class _Stream:
    """Per-stream protocol state; the application's buffers live in the adapter."""

    __slots__ = (
        "acked",
        "buffered",
        "last_update",
        "local_fin",
        "recv_max",
        "recv_window",
        "remote_fin",
        "send_window",
        "sent_first",
        "stream_id",
    )

    def __init__(self, stream_id: int, *, local: bool, recv_max: int, now: float) -> None:
        self.stream_id = stream_id
        self.send_window = INITIAL_STREAM_WINDOW  # what the peer lets us send
        self.recv_window = INITIAL_STREAM_WINDOW  # what we still let the peer send
        self.recv_max = recv_max  # the window we aim to advertise
        self.buffered = 0  # received but not yet consumed by the application
        self.local_fin = False
        self.remote_fin = False
        self.acked = not local  # for our streams: has the peer ACKed?
        self.sent_first = local  # for peer streams: have we sent the ACK?
        self.last_update = now

    def state(self) -> StreamState:
        if not self.sent_first:
            return StreamState.SYN_RECEIVED
        if not self.acked:
            return StreamState.SYN_SENT
        if self.local_fin and self.remote_fin:
            return StreamState.CLOSED
        if self.local_fin:
            return StreamState.LOCAL_CLOSE
        if self.remote_fin:
            return StreamState.REMOTE_CLOSE
        return StreamState.ESTABLISHED


class YamuxCore:
    """One yamux session, without I/O."""

    def __init__(
        self,
        role: Role,
        config: YamuxConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.config = config or YamuxConfig()
        self._clock = clock
        self.state = SessionState.OPEN
        self._next_id = 1 if role is Role.CLIENT else 2
        self._streams: dict[int, _Stream] = {}
        self._unaccepted = 0
        self._in = bytearray()
        self._pos = 0
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()
        self._next_ping = 1
        self.local_goaway: int | None = None
        self.remote_goaway: int | None = None
        self.rtt: float | None = None
        """Set by the adapter from ping round trips; used by window auto-tuning."""
        self._error: RemoteProtocolError | None = None  # raised once by next_event
        self.close_cause: RemoteProtocolError | None = None
        recv_max = INITIAL_STREAM_WINDOW if self.config.auto_tune_window else self.config.max_window
        self._initial_recv_max = recv_max

    # -- inspection ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def stream_state(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        return StreamState.CLOSED if stream is None else stream.state()

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.send_window

    def recv_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.recv_window

    @property
    def bytes_pending(self) -> int:
        """Bytes queued for the wire and not yet taken by ``data_to_send``."""
        return sum(map(len, self._out))

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call."""
        if not self._out:
            return b""
        out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return out

    # -- commands --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.state is SessionState.CLOSED:
            cause = self.close_cause
            if cause is not None:
                raise SessionClosedError(f"yamux session closed: {cause}") from cause
            raise SessionClosedError("yamux session is closed")

    def _get(self, stream_id: int) -> _Stream:
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(f"yamux stream {stream_id} is closed or was never opened")
        return stream

    def _frame(self, ftype: int, flags: int, stream_id: int, length: int) -> None:
        self._out.append(encode_header(ftype, flags, stream_id, length))

    def _first_flags(self, stream: _Stream) -> int:
        """SYN on nothing; ACK on the first frame we send for a peer-opened stream."""
        if not stream.sent_first:
            stream.sent_first = True
            self._unaccepted -= 1
            return _ACK
        return 0

    def open_stream(self) -> int:
        """Allocate the next stream id and queue its SYN (a window update, as hashicorp does)."""
        self._check_open()
        if self.remote_goaway is not None:
            raise GoAwayError(
                f"the peer sent GoAway ({GoAwayReceived(self.remote_goaway).meaning}): "
                "no new streams on this session",
                code=self.remote_goaway,
            )
        if self.local_goaway is not None:
            raise LocalProtocolError("this session sent GoAway: it may not open new streams")
        stream_id = self._next_id
        if stream_id > 0xFFFFFFFF:
            raise LocalProtocolError("stream ids exhausted on this session; open a new session")
        self._next_id += 2
        stream = _Stream(stream_id, local=True, recv_max=self._initial_recv_max, now=self._clock())
        self._streams[stream_id] = stream
        delta = stream.recv_max - stream.recv_window
        stream.recv_window += delta
        self._frame(_WINDOW_UPDATE, _SYN, stream_id, delta)
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        """Acknowledge a peer-opened stream (queues its ACK)."""
        stream = self._get(stream_id)
        if stream.sent_first:
            raise LocalProtocolError(f"yamux stream {stream_id} was already accepted")
        flags = self._first_flags(stream)
        delta = stream.recv_max - stream.recv_window - stream.buffered
        delta = max(delta, 0)
        stream.recv_window += delta
        stream.last_update = self._clock()
        self._frame(_WINDOW_UPDATE, flags, stream_id, delta)

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the peer's window allows; return how many bytes."""
        stream = self._get(stream_id)
        if stream.local_fin:
            raise StreamClosedError(f"yamux stream {stream_id} is closed for writing")
        total = min(len(data), stream.send_window)
        if total == 0:
            return 0
        view = memoryview(data)
        step = self.config.max_frame_payload
        out = self._out
        flags = self._first_flags(stream)
        for start in range(0, total, step):
            n = min(step, total - start)
            out.append(encode_header(_DATA, flags, stream_id, n))
            out.append(bytes(view[start : start + n]))
            flags = 0
        stream.send_window -= total
        return total

    def consume(self, stream_id: int, n: int) -> None:
        """The application read ``n`` bytes of the stream: may queue a window update."""
        stream = self._streams.get(stream_id)
        if stream is None or self.state is SessionState.CLOSED:
            return  # the stream ended; its window no longer matters
        if n < 0 or n > stream.buffered:
            raise LocalProtocolError(
                f"consumed {n} bytes on stream {stream_id} but only {stream.buffered} are buffered"
            )
        stream.buffered -= n
        if stream.remote_fin or not stream.sent_first:
            return  # no more data can come, or the ACK will carry the update
        self._maybe_window_update(stream)

    def _maybe_window_update(self, stream: _Stream) -> None:
        delta = (stream.recv_max - stream.buffered) - stream.recv_window
        if delta < stream.recv_max // 2:
            return
        now = self._clock()
        if (
            self.config.auto_tune_window
            and stream.recv_max < self.config.max_window
            and self.rtt is not None
            and now - stream.last_update < 2 * self.rtt
        ):
            grown = min(stream.recv_max * 2, self.config.max_window)
            delta += grown - stream.recv_max
            stream.recv_max = grown
        stream.last_update = now
        stream.recv_window += delta
        self._frame(_WINDOW_UPDATE, 0, stream.stream_id, delta)

    def close_stream(self, stream_id: int) -> None:
        """Half-close: queue FIN.  The stream is gone once both sides sent FIN."""
        stream = self._get(stream_id)
        if stream.local_fin:
            return
        stream.local_fin = True
        self._frame(_WINDOW_UPDATE, self._first_flags(stream) | _FIN, stream_id, 0)
        if stream.remote_fin:
            self._forget(stream)

    def reset_stream(self, stream_id: int) -> None:
        """Queue RST and forget the stream; a no-op for a stream already gone."""
        if self.state is SessionState.CLOSED:
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._frame(_WINDOW_UPDATE, self._first_flags(stream) | _RST, stream_id, 0)
        self._forget(stream)

    def ping(self) -> int:
        """Queue a ping; return its opaque value (the matching ``PongReceived`` carries it)."""
        self._check_open()
        opaque = self._next_ping
        self._next_ping = (self._next_ping + 1) & 0xFFFFFFFF or 1
        self._frame(_PING, _SYN, 0, opaque)
        return opaque

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Queue GoAway: the peer may open no more streams; existing ones go on."""
        self._check_open()
        if self.local_goaway is not None:
            return
        self.local_goaway = int(code)
        self.state = SessionState.GOING_AWAY
        self._frame(_GO_AWAY, 0, 0, int(code))

    def close(self) -> None:
        """Mark the session closed (after queueing GoAway if none was sent)."""
        if self.state is SessionState.CLOSED:
            return
        if self.local_goaway is None:
            self.go_away(GoAwayCode.NORMAL)
        self.state = SessionState.CLOSED

    def _forget(self, stream: _Stream) -> None:
        if self._streams.pop(stream.stream_id, None) is not None and not stream.sent_first:
            self._unaccepted -= 1

    # -- input -----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the connection; then call ``next_event`` until ``None``."""
        if self.state is SessionState.CLOSED:
            return
        buf = self._in
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        elif self._pos >= _COMPACT_AT and self._pos * 2 >= len(buf):
            del buf[: self._pos]
            self._pos = 0
        buf += data

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more data is needed.

        Raises ``RemoteProtocolError`` once, when the peer violated the protocol (GoAway
        is then queued in ``data_to_send``), and ``SessionClosedError`` after that.
        """
        events = self._events
        while not events:
            if self.state is SessionState.CLOSED:
                if self._error is not None:
                    err, self._error = self._error, None
                    raise err
                if self.close_cause is not None:
                    self._check_open()  # raises SessionClosedError from the protocol error
                return None
            if not self._parse_one():
                return None
        return events.popleft()

    def _fail(self, message: str) -> bool:
        err = RemoteProtocolError(message, goaway_code=GoAwayCode.PROTOCOL_ERROR)
        if self.local_goaway is None:
            self.local_goaway = int(GoAwayCode.PROTOCOL_ERROR)
            self._frame(_GO_AWAY, 0, 0, int(GoAwayCode.PROTOCOL_ERROR))
        self.state = SessionState.CLOSED
        self._error = self.close_cause = err
        self._streams.clear()
        self._in.clear()
        self._pos = 0
        return True

    def _parse_one(self) -> bool:
        """Parse one frame if it is complete; False when more bytes are needed."""
        buf = self._in
        pos = self._pos
        if len(buf) - pos < HEADER_SIZE:
            return False
        version, ftype, flags, stream_id, length = unpack_header(buf, pos)
        if version != PROTOCOL_VERSION:
            return self._fail(f"unsupported yamux version {version} (expected 0)")
        if ftype == _DATA:
            # No window is ever larger than max_window: fail before buffering such a frame,
            # and fail the same way whether or not its payload has arrived yet.
            if length > self.config.max_window:
                return self._fail(
                    f"data frame of {length} bytes on stream {stream_id} exceeds any window"
                )
            end = pos + HEADER_SIZE + length
            if len(buf) < end:
                return False
            with memoryview(buf) as view:
                payload = bytes(view[pos + HEADER_SIZE : end])
            self._pos = end
            self._on_stream_frame(flags, stream_id, length, payload)
            return True
        self._pos = pos + HEADER_SIZE
        if ftype == _WINDOW_UPDATE:
            self._on_stream_frame(flags, stream_id, length, None)
        elif ftype == _PING:
            self._on_ping(flags, stream_id, length)
        elif ftype == _GO_AWAY:
            self._on_go_away(stream_id, length)
        else:
            self._fail(f"unknown yamux frame type {ftype}")
        return True

    def _on_ping(self, flags: int, stream_id: int, opaque: int) -> None:
        if stream_id != 0:
            self._fail(f"ping on stream {stream_id} (must be 0)")
        elif flags & _SYN:
            self._frame(_PING, _ACK, 0, opaque)
        elif flags & _ACK:
            self._events.append(PongReceived(opaque))

    def _on_go_away(self, stream_id: int, code: int) -> None:
        if stream_id != 0:
            self._fail(f"GoAway on stream {stream_id} (must be 0)")
            return
        self.remote_goaway = code
        if self.state is SessionState.OPEN:
            self.state = SessionState.GOING_AWAY
        self._events.append(GoAwayReceived(code))

    def _on_stream_frame(
        self, flags: int, stream_id: int, length: int, payload: bytes | None
    ) -> None:
        if stream_id == 0:
            self._fail("stream frame on stream id 0")
            return
        events = self._events
        stream = self._streams.get(stream_id)
        if flags & _SYN:
            if stream is not None:
                self._fail(f"duplicate stream id {stream_id}: it is already open")
                return
            if (stream_id & 1) == (self._next_id & 1):
                self._fail(
                    f"peer opened stream {stream_id} with this side's parity "
                    f"({'odd' if stream_id & 1 else 'even'} ids are ours)"
                )
                return
            if self.local_goaway is not None or self._unaccepted >= self.config.accept_backlog:
                # After our GoAway, or past the backlog: refuse the stream, keep the session.
                self._frame(_WINDOW_UPDATE, _RST, stream_id, 0)
                return
            stream = _Stream(
                stream_id, local=False, recv_max=self._initial_recv_max, now=self._clock()
            )
            self._streams[stream_id] = stream
            self._unaccepted += 1
            events.append(StreamRequested(stream_id))
        elif stream is None:
            return  # a frame for a stream already gone (reset or closed): discard it
        if flags & _ACK and not stream.acked:
            stream.acked = True
            events.append(StreamEstablished(stream_id))
        if payload is None:
            if length:
                stream.send_window += length
                events.append(WindowUpdated(stream_id, length))
        elif length:
            if length > stream.recv_window:
                self._fail(
                    f"receive window exceeded on stream {stream_id}: "
                    f"{length} bytes sent, {stream.recv_window} allowed"
                )
                return
            if stream.remote_fin:
                self._fail(f"data on stream {stream_id} after its FIN")
                return
            stream.recv_window -= length
            stream.buffered += length
            events.append(DataReceived(stream_id, payload))
        if flags & _RST:
            self._forget(stream)
            events.append(StreamReset(stream_id))
        elif flags & _FIN and not stream.remote_fin:
            stream.remote_fin = True
            events.append(StreamEnded(stream_id))
            if stream.local_fin:
                self._forget(stream)
