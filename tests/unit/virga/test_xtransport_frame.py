"""The xtransport wire format: header layout, CRC, MessageHead and Ack payloads.

Expected bytes are built by hand (struct / literal bytes) from the layout of the
kylin-x-kernel/xtransfer crate, not with the codec under test.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from virga.errors import LocalProtocolError, RemoteProtocolError
from virga.xtransport.frame import (
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    MAGIC,
    MAX_FRAME_SIZE,
    MESSAGE_HEAD_SIZE,
    MIN_FRAME_SIZE,
    FrameHeader,
    FrameType,
    MessageHead,
    crc32,
    decode_ack,
    decode_header,
    encode_ack,
    encode_frame,
    max_payload,
    pack_frame_into,
)


def test_constants_match_the_crate() -> None:
    assert MAGIC == 0x58545250
    assert HEADER_SIZE == 16
    assert MESSAGE_HEAD_SIZE == 32
    assert DEFAULT_FRAME_SIZE == 4096
    # frame size counts the header: 4096-byte frames carry 4080 payload bytes
    assert max_payload(DEFAULT_FRAME_SIZE) == 4080
    assert [(t.name, t.value) for t in FrameType] == [
        ("DATA", 0),
        ("MESSAGE_HEAD", 1),
        ("MESSAGE_DATA", 2),
        ("ACK", 3),
    ]
    assert MIN_FRAME_SIZE == 48
    assert MAX_FRAME_SIZE == 16 + 0xFFFF


def test_crc_is_crc32_ieee() -> None:
    # The standard CRC-32 check value (same algorithm as Rust's crc32fast).
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"") == 0


def test_data_frame_bytes_exactly() -> None:
    frame = encode_frame(FrameType.DATA, 0x01020304, b"abc")
    assert frame == (
        b"\x50\x52\x54\x58"  # magic, little-endian
        + b"\x01"  # version
        + b"\x00"  # type Data
        + b"\x04\x03\x02\x01"  # seq
        + b"\x03\x00"  # length
        + b"\xc2\x41\x24\x35"  # crc32(b"abc") = 0x352441c2
        + b"abc"
    )


@pytest.mark.parametrize("ftype", list(FrameType))
def test_header_round_trip(ftype: FrameType) -> None:
    payload = bytes(range(200))
    frame = encode_frame(ftype, 0xFFFFFFFF, payload)
    header = decode_header(frame)
    assert header == FrameHeader(ftype, 0xFFFFFFFF, 200, zlib.crc32(payload))
    assert frame[HEADER_SIZE:] == payload


def test_decode_header_at_offset() -> None:
    frame = encode_frame(FrameType.ACK, 7, encode_ack(6))
    header = decode_header(b"junk" + frame, 4)
    assert (header.type, header.seq, header.length) == (FrameType.ACK, 7, 4)


def test_pack_frame_into_writes_consecutive_frames() -> None:
    buf = bytearray(2 * HEADER_SIZE + 5)
    off = pack_frame_into(buf, 0, FrameType.DATA, 0, b"hi")
    off = pack_frame_into(buf, off, FrameType.DATA, 1, b"you")
    assert off == len(buf)
    assert bytes(buf) == encode_frame(FrameType.DATA, 0, b"hi") + encode_frame(
        FrameType.DATA, 1, b"you"
    )


def _header(magic: int = MAGIC, version: int = 1, ftype: int = 0) -> bytes:
    return struct.pack("<IBBIHI", magic, version, ftype, 0, 0, 0)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (_header(magic=0x50525458), "bad magic 0x50525458"),
        (b"GET / HTTP/1.1\r\n", "bad magic"),
        (_header(version=2), "unsupported version 2"),
        (_header(version=0), "unsupported version 0"),
        (_header(ftype=4), "unknown type 4"),
        (_header(ftype=255), "unknown type 255"),
    ],
)
def test_decode_header_rejects_bad_input(raw: bytes, words: str) -> None:
    with pytest.raises(RemoteProtocolError, match=words):
        decode_header(raw)


def test_decode_header_needs_16_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        decode_header(b"\x50\x52\x54\x58\x01\x00")


def test_encode_frame_refuses_what_the_header_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError, match="65536"):
        encode_frame(FrameType.DATA, 0, bytes(65536))
    with pytest.raises(LocalProtocolError, match="32 bits"):
        encode_frame(FrameType.DATA, 1 << 32, b"")
    assert len(encode_frame(FrameType.DATA, 0, bytes(65535))) == 65535 + 16


def test_message_head_layout() -> None:
    head = MessageHead(total_length=10_000_000, message_id=3, packet_count=2451)
    raw = head.encode()
    assert raw == struct.pack("<QQII", 10_000_000, 3, 2451, 0) + bytes(8)
    assert MessageHead.decode(raw) == head


def test_message_head_decode_tolerates_extension_bytes_but_not_short_input() -> None:
    raw = struct.pack("<QQII", 5, 1, 1, 9) + b"reserved" + b"extension"
    assert MessageHead.decode(raw) == MessageHead(5, 1, 1, flags=9)
    with pytest.raises(RemoteProtocolError, match="31 bytes"):
        MessageHead.decode(raw[:31])


def test_ack_payload() -> None:
    assert encode_ack(0x0A0B0C0D) == b"\x0d\x0c\x0b\x0a"
    assert decode_ack(b"\x0d\x0c\x0b\x0a") == 0x0A0B0C0D
    for bad in (b"", b"\x00\x00\x00", b"\x00" * 5):
        with pytest.raises(RemoteProtocolError, match="Ack payload"):
            decode_ack(bad)
