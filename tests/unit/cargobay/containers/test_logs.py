"""The multiplexed log stream decoder and line assembly (sans-IO), and time parsing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargobay.containers.logs import Demuxer, LineAssembler, LogFrame, parse_time
from cargobay.errors import EngineError, InvalidInput


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_frames_from_one_chunk() -> None:
    demux = Demuxer()
    demux.receive_data(frame(1, b"out\n") + frame(2, b"err\n") + frame(0, b"") + frame(3, b"x"))
    assert list(demux.frames()) == [
        LogFrame("stdout", b"out\n"),
        LogFrame("stderr", b"err\n"),
        LogFrame("stdin", b""),
        LogFrame("system", b"x"),
    ]
    assert demux.next_frame() is None


def test_header_split_across_chunks() -> None:
    data = frame(1, b"hello")
    demux = Demuxer()
    for i in range(len(data)):
        demux.receive_data(data[i : i + 1])
        got = demux.next_frame()
        if i < len(data) - 1:
            assert got is None
    assert got == LogFrame("stdout", b"hello")


def test_truncated_stream_is_an_error() -> None:
    demux = Demuxer()
    demux.receive_data(frame(1, b"hello")[:-2])
    assert demux.next_frame() is None
    demux.receive_data(b"")
    with pytest.raises(EngineError, match="ended inside a frame"):
        demux.next_frame()
    header_only = Demuxer()
    header_only.receive_data(b"\x01\x00\x00")
    header_only.receive_data(b"")
    with pytest.raises(EngineError, match="frame header"):
        header_only.next_frame()


@pytest.mark.parametrize(
    "header", [b"\x05\0\0\0\0\0\0\x01", b"\x01\0\x01\0\0\0\0\x01", b"hello wo"]
)
def test_malformed_header(header: bytes) -> None:
    demux = Demuxer()
    demux.receive_data(header + b"x" * 8)
    with pytest.raises(EngineError, match=r"malformed log frame header.*TTY"):
        demux.next_frame()


def test_raw_mode_for_tty_containers() -> None:
    demux = Demuxer(raw=True)
    demux.receive_data(b"abc")
    demux.receive_data(b"def\n")
    assert list(demux.frames()) == [LogFrame("stdout", b"abcdef\n")]
    assert demux.next_frame() is None


@given(
    st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), min_size=0, max_size=20),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50),
)
def test_any_chunking_gives_the_same_frames(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = b"".join(frame(kind, payload) for kind, payload in frames)
    demux = Demuxer()
    got = []
    offset = 0
    index = 0
    while offset < len(data):
        size = cuts[index % len(cuts)]
        index += 1
        demux.receive_data(data[offset : offset + size])
        offset += size
        got += [(1 if f.stream == "stdout" else 2, f.data) for f in demux.frames()]
    demux.receive_data(b"")
    got += [(1 if f.stream == "stdout" else 2, f.data) for f in demux.frames()]
    assert got == frames


def test_lines_across_frames_and_streams() -> None:
    lines = LineAssembler("web-1", service="web")
    out = lines.feed(LogFrame("stdout", b"par"))
    assert out == []
    out = lines.feed(LogFrame("stderr", b"e1\ne"))
    assert [(line.stream, line.text) for line in out] == [("stderr", "e1")]
    out = lines.feed(LogFrame("stdout", b"tial\r\nfull\n"))
    assert [(line.stream, line.text) for line in out] == [("stdout", "partial"), ("stdout", "full")]
    rest = lines.flush()
    assert [(line.stream, line.text) for line in rest] == [("stderr", "e")]
    assert lines.flush() == []
    assert out[0].container == "web-1"
    assert out[0].service == "web"


def test_timestamps_split_off() -> None:
    lines = LineAssembler("c", timestamps=True)
    out = lines.feed(LogFrame("stdout", b"2026-11-22T04:49:18.149244539Z hello world\nno stamp\n"))
    assert out[0].timestamp == "2026-11-22T04:49:18.149244539Z"
    assert out[0].text == "hello world"
    assert out[1].timestamp is None
    assert out[1].text == "no stamp"
    assert out[0].as_dict()["timestamp"] == out[0].timestamp


def test_invalid_utf8_is_replaced() -> None:
    out = LineAssembler("c").feed(LogFrame("stdout", b"bad \xff byte\n"))
    assert out[0].text == "bad \ufffd byte"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, 1700000000.0),
        ("1700000000.5", 1700000000.5),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T22:13:20+00:00", 1700000000.0),
        ("10m", 1000.0 - 600),
        ("1h30m", 1000.0 - 5400),
        ("90s", 910.0),
        ("500ms", 999.5),
    ],
)
def test_parse_time(value: str | int, expected: float) -> None:
    assert parse_time(value, now=1000.0) == expected


@pytest.mark.parametrize("value", ["yesterday", "10x", "2023-13-01"])
def test_parse_time_rejects(value: str) -> None:
    with pytest.raises(InvalidInput, match="bad time"):
        parse_time(value)
