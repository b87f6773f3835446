"""The xtransport protocol as a sans-IO state machine (h11 style): bytes in, events and bytes out.

``XTransportConnection`` does no I/O.  Feed it what the peer sent with ``receive_data`` and
pull ``next_event()`` until it returns ``NeedData``; hand it messages with ``send_message``
(or ``queue_message`` + ``data_to_send`` to produce the frames a few at a time) and write the
returned bytes, in the order they were returned, to the byte stream.

Semantics, following the ``xtransport`` crate of kylin-x-kernel/xtransfer (see ``frame``):

* A message of at most ``frame_size - 16`` bytes travels as one ``Data`` frame; a longer one
  as a ``MessageHead`` (total length, message id, chunk count) and that many ``MessageData``
  chunks of at most ``frame_size - 16`` bytes each.  Message ids start at 1.
* Each direction numbers its frames 0, 1, 2, ... (mod 2**32); Ack frames take numbers too.
  The receiver insists on exactly the next number: a gap or repeat means the stream lost
  sync, which a reliable byte stream never does for a correct peer.
* With ``wait_for_ack`` on, the receiver owes one ``Ack`` for every Data, MessageHead and
  MessageData frame (never for an Ack), carrying the acknowledged frame's seq; the sender
  keeps the seqs it has sent and expects their Acks in order.  Like the crate, both sides
  must agree on ``wait_for_ack``: an Ack nobody waits for is a protocol error.  The crate
  waits for each Ack before sending the next frame; ``data_to_send(max_frames=...)`` lets
  an adapter keep any number of frames in flight (one reproduces the crate exactly).

Where the crate is lenient this side is strict, because strictness is what bounds memory
and catches desync early: a frame longer than this side's frame size, a MessageData that
is not announced, a Data/MessageHead inside an unfinished message, chunks that cannot add
up to the announced length, or a message over ``max_message_size`` all raise
``RemoteProtocolError``; after one, the receiving side stays failed.  Misuse by the caller
(sending while a message is half produced, sending after ``close``) raises
``LocalProtocolError``.

Buffering is linear: received bytes go into one ``bytearray`` read at an offset and
compacted only when more than half of it is consumed; a long message is reassembled in a
``bytearray`` that grows by amortized doubling.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from virga.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from virga.xtransport.frame import (
    ACK_PAYLOAD_SIZE,
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    MAX_PACKET_COUNT,
    MIN_FRAME_SIZE,
    SEQ_MODULUS,
    FrameType,
    MessageHead,
    crc32,
    decode_ack,
    decode_header,
    encode_ack,
    max_payload,
    pack_frame_into,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "AckReceived",
    "ConnectionClosed",
    "Event",
    "MessageReceived",
    "NeedData",
    "RecvState",
    "SendState",
    "XTransportConfig",
    "XTransportConnection",
]

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
_MESSAGE_ID_MODULUS = 1 << 64


@dataclass(frozen=True, slots=True)
class XTransportConfig:
    """Settings for both ends of an xtransport connection.

    ``frame_size`` counts header and payload (the crate's ``with_max_frame_size``); the
    receiver rejects frames longer than its own, so the peer must use the same or a smaller
    size.  ``max_message_size`` bounds what is accepted and sent.  ``ack_timeout`` (seconds,
    ``None`` for no limit) and ``ack_window`` (frames in flight before waiting for Acks) are
    used by the asyncio adapter only.
    """

    frame_size: int = DEFAULT_FRAME_SIZE
    wait_for_ack: bool = False
    ack_timeout: float | None = 10.0
    ack_window: int = 64
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def __post_init__(self) -> None:
        def bad(field: str, why: str, value: object) -> ConfigError:
            return ConfigError(f"XTransportConfig.{field} {why} (got {value!r})")

        if type(self.frame_size) is not int or not (
            MIN_FRAME_SIZE <= self.frame_size <= MAX_FRAME_SIZE
        ):
            raise bad(
                "frame_size",
                f"must be an integer from {MIN_FRAME_SIZE} to {MAX_FRAME_SIZE} "
                "(header plus payload; the payload length is a u16)",
                self.frame_size,
            )
        if not isinstance(self.wait_for_ack, bool):
            raise bad("wait_for_ack", "must be True or False", self.wait_for_ack)
        if self.ack_timeout is not None and (
            isinstance(self.ack_timeout, bool)
            or not isinstance(self.ack_timeout, int | float)
            or not math.isfinite(self.ack_timeout)
            or self.ack_timeout <= 0
        ):
            raise bad(
                "ack_timeout", "must be a positive number of seconds or None", self.ack_timeout
            )
        if type(self.ack_window) is not int or self.ack_window < 1:
            raise bad("ack_window", "must be an integer of at least 1", self.ack_window)
        if type(self.max_message_size) is not int or self.max_message_size < 0:
            raise bad("max_message_size", "must be a non-negative integer", self.max_message_size)

    @property
    def max_payload(self) -> int:
        """Payload bytes per frame: ``frame_size - 16``."""
        return max_payload(self.frame_size)


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A whole message arrived.  ``message_id`` is the MessageHead's id, ``None`` for Data."""

    data: bytes
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The peer acknowledged the frame we numbered ``seq``."""

    seq: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the stream cleanly (between frames and between messages)."""


@dataclass(frozen=True, slots=True)
class NeedData:
    """Nothing more can be decoded until ``receive_data`` is called."""


NEED_DATA = NeedData()

Event = MessageReceived | AckReceived | ConnectionClosed | NeedData


class RecvState(enum.Enum):
    IDLE = "idle"  # between messages
    MESSAGE = "message"  # inside a MessageHead's chunks
    CLOSED = "closed"  # the peer's EOF was reported
    ERROR = "error"  # the peer violated the protocol; nothing more is decoded


class SendState(enum.Enum):
    IDLE = "idle"  # no message being produced
    SENDING = "sending"  # a queued message still has frames to produce
    CLOSED = "closed"  # close() was called; nothing more is sent


class XTransportConnection:
    """One end of an xtransport connection, with no I/O."""

    def __init__(self, config: XTransportConfig | None = None) -> None:
        self._config = config or XTransportConfig()
        self._max_payload = self._config.max_payload
        # receiving
        self._recv_state = RecvState.IDLE
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already decoded
        self._eof = False
        self._recv_seq = 0  # the seq the next frame must carry
        self._error: RemoteProtocolError | None = None
        self._in_head: MessageHead | None = None
        self._in_data = bytearray()
        self._in_frames = 0
        self._acks_owed: deque[int] = deque()
        # sending
        self._send_state = SendState.IDLE
        self._send_seq = 0
        self._next_message_id = 1
        self._unacked: deque[int] = deque()
        self._out: memoryview | None = None
        self._out_pos = 0
        self._out_head: MessageHead | None = None  # set until the MessageHead is produced
        self._out_single = False

    def __repr__(self) -> str:
        return (
            f"<XTransportConnection recv={self._recv_state.value} send={self._send_state.value} "
            f"recv_seq={self._recv_seq} send_seq={self._send_seq} unacked={len(self._unacked)}>"
        )

    @property
    def config(self) -> XTransportConfig:
        return self._config

    @property
    def recv_state(self) -> RecvState:
        return self._recv_state

    @property
    def send_state(self) -> SendState:
        return self._send_state

    @property
    def sending(self) -> bool:
        """True while a queued message still has frames for ``data_to_send`` to produce."""
        return self._send_state is SendState.SENDING

    @property
    def unacked(self) -> int:
        """Frames sent (with ``wait_for_ack``) whose Ack has not arrived yet."""
        return len(self._unacked)

    @property
    def acks_owed(self) -> int:
        """Acks this side owes the peer; ``data_to_send`` produces them."""
        return len(self._acks_owed)

    # --- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the stream (EOF)."""
        if self._recv_state is RecvState.ERROR:
            return  # the stream is already condemned; nothing after the error is decoded
        if self._eof:
            raise LocalProtocolError("receive_data() called after the end of the stream (b'')")
        if not data:
            self._eof = True
            return
        # Compact only when most of the buffer is consumed: amortized O(1) per byte.
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event:
        """The next event, or ``NEED_DATA``; raises ``RemoteProtocolError`` for a bad peer."""
        if self._recv_state is RecvState.ERROR:
            raise RemoteProtocolError(
                f"xtransport connection already failed: {self._error}"
            ) from self._error
        if self._recv_state is RecvState.CLOSED:
            return ConnectionClosed()
        try:
            return self._decode()
        except RemoteProtocolError as err:
            self._recv_state = RecvState.ERROR
            self._error = err
            self._buf = bytearray()
            self._pos = 0
            self._in_data = bytearray()
            raise

    @property
    def buffered(self) -> int:
        """Received bytes not decoded yet."""
        return len(self._buf) - self._pos

    def _decode(self) -> Event:
        buf = self._buf
        while True:
            start = self._pos
            avail = len(buf) - start
            if avail < HEADER_SIZE:
                break
            header = decode_header(buf, start)
            if header.length > self._max_payload:
                raise RemoteProtocolError(
                    f"xtransport frame seq {header.seq} has a {header.length}-byte payload, over "
                    f"this side's limit of {self._max_payload} (frame_size "
                    f"{self._config.frame_size}); configure the same frame size on both sides"
                )
            end = start + HEADER_SIZE + header.length
            if len(buf) < end:
                break
            payload = buf[start + HEADER_SIZE : end]  # one copy of at most one frame
            if crc32(payload) != header.crc32:
                raise RemoteProtocolError(
                    f"xtransport frame seq {header.seq} ({header.type.name}) failed its CRC-32 "
                    f"check (header 0x{header.crc32:08x}, payload 0x{crc32(payload):08x})"
                )
            if header.seq != self._recv_seq:
                raise RemoteProtocolError(
                    f"xtransport frame out of order: got seq {header.seq}, "
                    f"expected {self._recv_seq}"
                )
            self._recv_seq = (header.seq + 1) % SEQ_MODULUS
            self._pos = end
            event = self._handle_frame(header.type, header.seq, payload)
            if event is not None:
                return event
        if not self._eof:
            return NEED_DATA
        if self._pos < len(buf):
            raise RemoteProtocolError(
                f"xtransport stream ended inside a frame ({len(buf) - self._pos} bytes of it "
                "arrived)"
            )
        if self._in_head is not None:
            raise RemoteProtocolError(
                f"xtransport stream ended inside message {self._in_head.message_id} "
                f"({len(self._in_data)} of {self._in_head.total_length} bytes, "
                f"{self._in_frames} of {self._in_head.packet_count} chunks)"
            )
        self._recv_state = RecvState.CLOSED
        return ConnectionClosed()

    def _handle_frame(self, ftype: FrameType, seq: int, payload: bytearray) -> Event | None:
        if ftype is FrameType.ACK:
            return self._handle_ack(decode_ack(payload))
        if ftype is FrameType.MESSAGE_DATA:
            event = self._handle_chunk(seq, payload)
        else:
            if self._in_head is not None:
                raise RemoteProtocolError(
                    f"xtransport {ftype.name} frame seq {seq} arrived while message "
                    f"{self._in_head.message_id} is unfinished ({self._in_frames} of "
                    f"{self._in_head.packet_count} chunks)"
                )
            if ftype is FrameType.DATA:
                self._check_size(len(payload))
                event = MessageReceived(bytes(payload))
            else:
                self._start_message(MessageHead.decode(payload))
                event = None
        if self._config.wait_for_ack:
            self._acks_owed.append(seq)
        return event

    def _handle_ack(self, acked: int) -> AckReceived:
        if not self._unacked:
            hint = (
                ""
                if self._config.wait_for_ack
                else " (wait_for_ack is off here; both sides must use the same setting)"
            )
            raise RemoteProtocolError(
                f"xtransport Ack for seq {acked}, but no frame is waiting for one{hint}"
            )
        if acked != self._unacked[0]:
            raise RemoteProtocolError(
                f"xtransport Ack for seq {acked}, but the oldest unacknowledged frame is "
                f"seq {self._unacked[0]}"
            )
        self._unacked.popleft()
        return AckReceived(acked)

    def _check_size(self, size: int) -> None:
        if size > self._config.max_message_size:
            raise RemoteProtocolError(
                f"xtransport message of {size} bytes exceeds max_message_size "
                f"{self._config.max_message_size}"
            )

    def _start_message(self, head: MessageHead) -> None:
        self._check_size(head.total_length)
        count, total = head.packet_count, head.total_length
        if not 1 <= count <= total or total > count * self._max_payload:
            raise RemoteProtocolError(
                f"xtransport MessageHead {head.message_id} is inconsistent: {total} bytes in "
                f"{count} chunks of 1 to {self._max_payload} bytes"
            )
        self._in_head = head
        self._in_data = bytearray()
        self._in_frames = 0
        self._recv_state = RecvState.MESSAGE

    def _handle_chunk(self, seq: int, payload: bytearray) -> MessageReceived | None:
        head = self._in_head
        if head is None:
            raise RemoteProtocolError(
                f"xtransport MessageData frame seq {seq} without a MessageHead before it"
            )
        frames_left = head.packet_count - self._in_frames - 1
        bytes_left = head.total_length - len(self._in_data) - len(payload)
        # Invariant: every remaining chunk carries 1..max_payload bytes.
        if not payload or not frames_left <= bytes_left <= frames_left * self._max_payload:
            raise RemoteProtocolError(
                f"xtransport MessageData seq {seq} of {len(payload)} bytes does not fit message "
                f"{head.message_id}: {head.total_length - len(self._in_data)} bytes left for "
                f"{frames_left + 1} chunks"
            )
        self._in_data += payload
        self._in_frames += 1
        if frames_left:
            return None
        data = bytes(self._in_data)
        self._in_head = None
        self._in_data = bytearray()
        self._in_frames = 0
        self._recv_state = RecvState.IDLE
        return MessageReceived(data, head.message_id)

    # --- sending -----------------------------------------------------------------------

    def send_message(self, data: bytes | bytearray | memoryview) -> bytes:
        """All the frames of one message (plus any Acks owed), ready to write."""
        self.queue_message(data)
        return self.data_to_send()

    def queue_message(self, data: bytes | bytearray | memoryview) -> None:
        """Start a message whose frames ``data_to_send`` will produce.

        ``data`` is copied unless it is ``bytes``.  Only one message may be in production.
        """
        if self._send_state is SendState.CLOSED:
            raise LocalProtocolError("cannot send on a closed xtransport connection")
        if self._send_state is SendState.SENDING:
            raise LocalProtocolError(
                "the previous xtransport message is not fully produced; "
                "call data_to_send() until sending is False"
            )
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer while frames are produced
        size = len(data)
        if size > self._config.max_message_size:
            raise LocalProtocolError(
                f"xtransport message of {size} bytes exceeds max_message_size "
                f"{self._config.max_message_size}"
            )
        count = -(-size // self._max_payload)
        if count > MAX_PACKET_COUNT:
            raise LocalProtocolError(
                f"xtransport message of {size} bytes needs {count} chunks, over the u32 limit"
            )
        self._out = memoryview(data)
        self._out_pos = 0
        self._out_single = size <= self._max_payload
        if self._out_single:
            self._out_head = None
        else:
            self._out_head = MessageHead(size, self._next_message_id, count)
            self._next_message_id = (self._next_message_id + 1) % _MESSAGE_ID_MODULUS
        self._send_state = SendState.SENDING

    def data_to_send(self, max_frames: int | None = None) -> bytes:
        """The bytes to write next: every Ack owed, then up to ``max_frames`` message frames.

        Frame numbers are assigned here, so bytes must be written in the order this method
        returns them.  ``max_frames=0`` produces only Acks; ``None`` means no limit.
        """
        if max_frames is not None and max_frames < 0:
            raise LocalProtocolError(f"max_frames must be >= 0 (got {max_frames})")
        if self._send_state is SendState.CLOSED:
            return b""
        frames: list[tuple[FrameType, bytes | memoryview]] = []
        budget = -1 if max_frames is None else max_frames
        out = self._out
        if out is not None and budget != 0:
            if self._out_single:
                frames.append((FrameType.DATA, out))
                self._out_pos = len(out)
            else:
                if self._out_head is not None:
                    frames.append((FrameType.MESSAGE_HEAD, self._out_head.encode()))
                    self._out_head = None
                    budget -= 1
                step = self._max_payload
                pos, n = self._out_pos, len(out)
                while budget != 0 and pos < n:
                    frames.append((FrameType.MESSAGE_DATA, out[pos : pos + step]))
                    pos += step
                    budget -= 1
                self._out_pos = min(pos, n)
            if self._out_pos >= len(out) and self._out_head is None:
                self._out = None
                self._send_state = SendState.IDLE
        size = len(self._acks_owed) * (HEADER_SIZE + ACK_PAYLOAD_SIZE)
        size += sum(HEADER_SIZE + len(payload) for _, payload in frames)
        buf = bytearray(size)
        offset = 0
        seq = self._send_seq
        while self._acks_owed:
            offset = pack_frame_into(
                buf, offset, FrameType.ACK, seq, encode_ack(self._acks_owed.popleft())
            )
            seq = (seq + 1) % SEQ_MODULUS
        track = self._config.wait_for_ack
        for ftype, payload in frames:
            offset = pack_frame_into(buf, offset, ftype, seq, payload)
            if track:
                self._unacked.append(seq)
            seq = (seq + 1) % SEQ_MODULUS
        self._send_seq = seq
        return bytes(buf)

    def close(self) -> None:
        """Stop sending: an unfinished message and owed Acks are dropped.  Idempotent."""
        self._send_state = SendState.CLOSED
        self._out = None
        self._out_head = None
        self._acks_owed.clear()
