"""The yamux header codec (virga.yamux.frame) against the byte layout of hashicorp's spec.md.

Expected bytes are written out by hand from the spec (big-endian Version u8, Type u8,
Flags u16, StreamID u32, Length u32), not produced by the code under test.
"""

from __future__ import annotations

import struct

import pytest

from virga.yamux.frame import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    encode_header,
    unpack_header,
)


def test_header_is_twelve_bytes_and_version_zero() -> None:
    assert HEADER_SIZE == 12
    assert PROTOCOL_VERSION == 0
    assert len(encode_header(FrameType.DATA, 0, 0, 0)) == HEADER_SIZE


def test_frame_type_and_flag_values_match_the_spec() -> None:
    assert [(t.name, int(t)) for t in FrameType] == [
        ("DATA", 0),
        ("WINDOW_UPDATE", 1),
        ("PING", 2),
        ("GO_AWAY", 3),
    ]
    assert (int(Flag.SYN), int(Flag.ACK), int(Flag.FIN), int(Flag.RST)) == (1, 2, 4, 8)


def test_encode_is_big_endian_in_field_order() -> None:
    raw = encode_header(FrameType.WINDOW_UPDATE, Flag.SYN | Flag.FIN, 0x01020304, 0x0A0B0C0D)
    assert raw == bytes([0x00, 0x01, 0x00, 0x05, 0x01, 0x02, 0x03, 0x04, 0x0A, 0x0B, 0x0C, 0x0D])


def test_flags_use_both_bytes_of_the_u16() -> None:
    raw = encode_header(FrameType.DATA, 0x0102, 7, 0)
    assert raw[2:4] == b"\x01\x02"


@pytest.mark.parametrize("ftype", list(FrameType))
@pytest.mark.parametrize(
    "flags",
    [
        Flag.NONE,
        Flag.SYN,
        Flag.ACK,
        Flag.FIN,
        Flag.RST,
        Flag.SYN | Flag.FIN,
        Flag.ACK | Flag.RST,
        Flag.SYN | Flag.ACK | Flag.FIN | Flag.RST,
    ],
)
def test_round_trip_every_type_and_flag(ftype: FrameType, flags: Flag) -> None:
    raw = encode_header(ftype, flags, 0xFFFFFFFF, 0xFFFFFFFE)
    header = FrameHeader.decode(raw)
    assert header == FrameHeader(PROTOCOL_VERSION, int(ftype), int(flags), 0xFFFFFFFF, 0xFFFFFFFE)
    assert header.encode() == raw
    assert unpack_header(raw, 0) == (0, int(ftype), int(flags), 0xFFFFFFFF, 0xFFFFFFFE)


def test_decode_at_offset_and_from_any_buffer_type() -> None:
    raw = b"junk" + encode_header(FrameType.PING, Flag.ACK, 0, 1234) + b"tail"
    for buf in (raw, bytearray(raw), memoryview(raw)):
        header = FrameHeader.decode(buf, 4)
        assert (header.type, header.flags, header.stream_id, header.length) == (2, 2, 0, 1234)


def test_decode_keeps_unknown_versions_types_and_flags_for_the_session_to_judge() -> None:
    raw = struct.pack(">BBHII", 9, 200, 0xFFF0, 5, 6)
    header = FrameHeader.decode(raw)
    assert (header.version, header.type, header.flags) == (9, 200, 0xFFF0)
    assert "type=200" in str(header)


def test_decode_of_a_short_buffer_raises() -> None:
    with pytest.raises(struct.error):
        FrameHeader.decode(b"\x00" * 11)


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(struct.error):
        encode_header(FrameType.DATA, 0, 1 << 32, 0)
    with pytest.raises(struct.error):
        encode_header(FrameType.DATA, 0, 1, -1)
    with pytest.raises(struct.error):
        encode_header(FrameType.DATA, 1 << 16, 1, 0)


def test_str_names_the_type_and_flags() -> None:
    text = str(FrameHeader(0, FrameType.WINDOW_UPDATE, Flag.SYN | Flag.ACK, 3, 100))
    assert text.startswith("WINDOW_UPDATE ")
    assert "SYN" in text
    assert "ACK" in text
    assert "stream=3" in text
    assert "len=100" in text
    assert "flags=NONE" in str(FrameHeader(0, FrameType.DATA, 0, 1, 0))


@pytest.mark.parametrize(
    ("code", "value", "meaning"),
    [
        (GoAwayCode.NORMAL, 0, "normal termination"),
        (GoAwayCode.PROTOCOL_ERROR, 1, "protocol error"),
        (GoAwayCode.INTERNAL_ERROR, 2, "internal error"),
    ],
)
def test_goaway_codes_and_meanings(code: GoAwayCode, value: int, meaning: str) -> None:
    assert int(code) == value
    assert code.meaning == meaning
    raw = encode_header(FrameType.GO_AWAY, 0, 0, code)
    assert raw == bytes([0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, value])


def test_goaway_has_exactly_three_codes() -> None:
    assert len(GoAwayCode) == 3
    with pytest.raises(ValueError, match="3"):
        GoAwayCode(3)
