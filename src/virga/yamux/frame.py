"""The yamux wire format (hashicorp/yamux spec.md): a 12-byte big-endian header.

    Version (u8) | Type (u8) | Flags (u16) | StreamID (u32) | Length (u32)

``Length`` is the payload size for Data, the window delta for WindowUpdate, an opaque
value for Ping and the error code for GoAway.  Only Data frames carry a payload.
Pure functions and constants; no I/O and no state.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "encode_header",
]

PROTOCOL_VERSION: Final = 0
HEADER_SIZE: Final = 12
_HEADER: Final = struct.Struct(">BBHII")


class FrameType(enum.IntEnum):
    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    NONE = 0
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class GoAwayCode(enum.IntEnum):
    """Why a session is going away (the Length field of a GoAway frame)."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2

    @property
    def meaning(self) -> str:
        return _GOAWAY_MEANING[self]


_GOAWAY_MEANING: Final = {
    GoAwayCode.NORMAL: "normal termination",
    GoAwayCode.PROTOCOL_ERROR: "protocol error",
    GoAwayCode.INTERNAL_ERROR: "internal error",
}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    version: int
    type: int
    flags: int
    stream_id: int
    length: int

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
        """Decode the 12 bytes at ``offset`` (the caller checks there are 12)."""
        return cls(*_HEADER.unpack_from(buf, offset))

    def encode(self) -> bytes:
        return _HEADER.pack(self.version, self.type, self.flags, self.stream_id, self.length)

    def __str__(self) -> str:
        try:
            kind = FrameType(self.type).name
        except ValueError:
            kind = f"type={self.type}"
        # str() of an IntFlag is its number since Python 3.11; the names are what a log wants.
        names = Flag(self.flags & 0xF).name or "0"
        return f"{kind} flags={names} stream={self.stream_id} len={self.length}"


def encode_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(PROTOCOL_VERSION, ftype, flags, stream_id, length)


unpack_header: Final = _HEADER.unpack_from
