"""The xtransport wire format: a 16-byte little-endian frame header, its payload, and CRC-32.

This matches the ``xtransport`` crate of kylin-x-kernel/xtransfer (read, not copied, from its
``protocol.rs`` and ``config.rs``), so virga can talk to a Rust peer built on that crate.

Frame header, 16 bytes, every integer little-endian::

    offset  size  field
    0       4     magic    0x58545250 ("XTRP" read as a big-endian word)
    4       1     version  1
    5       1     type     0 Data, 1 MessageHead, 2 MessageData, 3 Ack
    6       4     seq      per-direction frame counter, starts at 0, wraps at 2**32;
                           every frame (Ack frames too) takes the next number
    10      2     length   payload length in bytes
    12      4     crc32    CRC-32 (IEEE, as zlib.crc32 / crc32fast) of the payload only

Payloads by type:

* ``Data``: a whole message that fits in one frame.
* ``MessageHead``: announces a message split over several frames; 32 bytes:
  ``total_length u64, message_id u64, packet_count u32, flags u32, reserved 8 bytes``.
  ``packet_count`` ``MessageData`` frames follow and their payloads concatenate to the message.
* ``MessageData``: one chunk of the announced message.
* ``Ack``: 4 bytes, the ``seq`` of the acknowledged frame (u32).

"Frame size" counts header plus payload, as in the crate (``max_payload = frame_size - 16``),
so the default 4096-byte frame carries at most 4080 payload bytes.

Everything here is pure computation on bytes; ``decode_header`` raises
``RemoteProtocolError`` for input no correct peer would send.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from virga.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ACK_PAYLOAD_SIZE",
    "DEFAULT_FRAME_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_FRAME_SIZE",
    "MAX_PACKET_COUNT",
    "MAX_PAYLOAD_LENGTH",
    "MESSAGE_HEAD_SIZE",
    "MIN_FRAME_SIZE",
    "SEQ_MODULUS",
    "VERSION",
    "FrameHeader",
    "FrameType",
    "MessageHead",
    "crc32",
    "decode_ack",
    "decode_header",
    "encode_ack",
    "encode_frame",
    "max_payload",
    "pack_frame_into",
]

MAGIC = 0x58545250
VERSION = 1
HEADER_SIZE = 16
MESSAGE_HEAD_SIZE = 32
ACK_PAYLOAD_SIZE = 4
DEFAULT_FRAME_SIZE = 4096
MAX_PAYLOAD_LENGTH = 0xFFFF  # the length field is a u16
# A MessageHead payload must fit in one frame; the length field bounds the other end.
MIN_FRAME_SIZE = HEADER_SIZE + MESSAGE_HEAD_SIZE
MAX_FRAME_SIZE = HEADER_SIZE + MAX_PAYLOAD_LENGTH
MAX_PACKET_COUNT = 0xFFFFFFFF  # packet_count is a u32
SEQ_MODULUS = 1 << 32

_HEADER = struct.Struct("<IBBIHI")
_MESSAGE_HEAD = struct.Struct("<QQII8x")
_ACK = struct.Struct("<I")

assert _HEADER.size == HEADER_SIZE
assert _MESSAGE_HEAD.size == MESSAGE_HEAD_SIZE


class FrameType(enum.IntEnum):
    """The ``type`` byte of a frame header."""

    DATA = 0
    MESSAGE_HEAD = 1
    MESSAGE_DATA = 2
    ACK = 3


_TYPES: dict[int, FrameType] = {t.value: t for t in FrameType}


def crc32(payload: bytes | bytearray | memoryview) -> int:
    """The payload checksum the header carries (CRC-32/IEEE, same as the crate's crc32fast)."""
    return zlib.crc32(payload) & 0xFFFFFFFF


def max_payload(frame_size: int) -> int:
    """Payload bytes one frame of ``frame_size`` bytes (header included) can carry."""
    return frame_size - HEADER_SIZE


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """A decoded frame header; ``length`` payload bytes follow it on the wire."""

    type: FrameType
    seq: int
    length: int
    crc32: int


def decode_header(data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
    """Decode the 16 header bytes at ``offset``.

    Raises ``RemoteProtocolError`` for a bad magic, version or type byte.  Whether
    ``length`` is acceptable depends on the receiver's frame size and is checked there.
    """
    if len(data) - offset < HEADER_SIZE:
        raise LocalProtocolError(
            f"decode_header needs {HEADER_SIZE} bytes, got {max(len(data) - offset, 0)}"
        )
    magic, version, type_byte, seq, length, checksum = _HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        raise RemoteProtocolError(
            f"xtransport frame has bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}); "
            "the peer does not speak xtransport or the stream lost sync"
        )
    if version != VERSION:
        raise RemoteProtocolError(
            f"xtransport frame has unsupported version {version} (this side speaks {VERSION})"
        )
    frame_type = _TYPES.get(type_byte)
    if frame_type is None:
        raise RemoteProtocolError(f"xtransport frame has unknown type {type_byte}")
    return FrameHeader(frame_type, seq, length, checksum)


def pack_frame_into(
    buf: bytearray,
    offset: int,
    frame_type: FrameType,
    seq: int,
    payload: bytes | bytearray | memoryview,
) -> int:
    """Write header and payload into ``buf`` at ``offset``; return the offset after the frame.

    ``buf`` must already be large enough.  The caller guarantees ``len(payload)`` fits a u16
    and ``seq`` fits a u32.
    """
    n = len(payload)
    _HEADER.pack_into(buf, offset, MAGIC, VERSION, frame_type, seq, n, crc32(payload))
    start = offset + HEADER_SIZE
    buf[start : start + n] = payload
    return start + n


def encode_frame(frame_type: FrameType, seq: int, payload: bytes | bytearray | memoryview) -> bytes:
    """One complete frame (header + payload)."""
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise LocalProtocolError(
            f"xtransport payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}"
        )
    if not 0 <= seq < SEQ_MODULUS:
        raise LocalProtocolError(f"xtransport seq {seq} does not fit in 32 bits")
    buf = bytearray(HEADER_SIZE + len(payload))
    pack_frame_into(buf, 0, frame_type, seq, payload)
    return bytes(buf)


def encode_ack(acked_seq: int) -> bytes:
    """The payload of an Ack frame for the frame numbered ``acked_seq``."""
    return _ACK.pack(acked_seq)


def decode_ack(payload: bytes | bytearray | memoryview) -> int:
    """The acknowledged seq from an Ack payload (exactly 4 bytes)."""
    if len(payload) != ACK_PAYLOAD_SIZE:
        raise RemoteProtocolError(
            f"xtransport Ack payload is {len(payload)} bytes, expected {ACK_PAYLOAD_SIZE}"
        )
    (seq,) = _ACK.unpack_from(payload)
    return int(seq)


@dataclass(frozen=True, slots=True)
class MessageHead:
    """The payload of a MessageHead frame: what the following MessageData frames add up to."""

    total_length: int
    message_id: int
    packet_count: int
    flags: int = 0

    def encode(self) -> bytes:
        return _MESSAGE_HEAD.pack(self.total_length, self.message_id, self.packet_count, self.flags)

    @classmethod
    def decode(cls, payload: bytes | bytearray | memoryview) -> MessageHead:
        """Decode a MessageHead payload.

        Like the crate, a payload longer than 32 bytes is accepted and the rest ignored
        (room for extensions); the reserved bytes are not checked.
        """
        if len(payload) < MESSAGE_HEAD_SIZE:
            raise RemoteProtocolError(
                f"xtransport MessageHead payload is {len(payload)} bytes, "
                f"expected at least {MESSAGE_HEAD_SIZE}"
            )
        total, message_id, count, flags = _MESSAGE_HEAD.unpack_from(payload)
        return cls(int(total), int(message_id), int(count), int(flags))
