"""The sans-IO xtransport state machine: two instances passing bytes, no sockets."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from virga.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from virga.xtransport import (
    NEED_DATA,
    AckReceived,
    ConnectionClosed,
    Event,
    MessageReceived,
    NeedData,
    RecvState,
    SendState,
    XTransportConfig,
    XTransportConnection,
)
from virga.xtransport.frame import HEADER_SIZE, FrameType, MessageHead, decode_header, encode_frame

SMALL = XTransportConfig(frame_size=64)  # 48 payload bytes per frame: many frames, fast tests


def drain(conn: XTransportConnection) -> list[Event]:
    """Every event until NeedData or ConnectionClosed."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return events


def messages(events: list[Event]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, MessageReceived)]


def split_frames(wire: bytes) -> list[tuple[FrameType, int, bytes]]:
    """(type, seq, payload) of each frame, parsed by hand."""
    out = []
    pos = 0
    while pos < len(wire):
        _magic, _ver, ftype, seq, length, _crc = struct.unpack_from("<IBBIHI", wire, pos)
        payload = wire[pos + 16 : pos + 16 + length]
        out.append((FrameType(ftype), seq, payload))
        pos += 16 + length
    assert pos == len(wire)
    return out


def raw_frame(ftype: int, seq: int, payload: bytes, *, crc: int | None = None) -> bytes:
    crc = zlib.crc32(payload) if crc is None else crc
    return struct.pack("<IBBIHI", 0x58545250, 1, ftype, seq, len(payload), crc) + payload


# --- configuration ----------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = XTransportConfig()
    assert cfg.frame_size == 4096
    assert cfg.max_payload == 4080
    assert cfg.wait_for_ack is False
    assert cfg.max_message_size >= 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frame_size": 47}, "frame_size"),
        ({"frame_size": 65552}, "frame_size"),
        ({"frame_size": 4096.0}, "frame_size"),
        ({"wait_for_ack": 1}, "wait_for_ack"),
        ({"ack_timeout": 0}, "ack_timeout"),
        ({"ack_timeout": -1.0}, "ack_timeout"),
        ({"ack_timeout": float("nan")}, "ack_timeout"),
        ({"ack_timeout": True}, "ack_timeout"),
        ({"ack_window": 0}, "ack_window"),
        ({"max_message_size": -1}, "max_message_size"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"XTransportConfig.{field} "):
        XTransportConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_edges() -> None:
    XTransportConfig(frame_size=48, ack_timeout=None, ack_window=1, max_message_size=0)
    XTransportConfig(frame_size=65551, ack_timeout=0.001)


# --- framing of what is sent --------------------------------------------------------------


def test_small_message_is_one_data_frame_and_seqs_count_up() -> None:
    conn = XTransportConnection()
    first = conn.send_message(b"hello")
    second = conn.send_message(b"")
    assert split_frames(first) == [(FrameType.DATA, 0, b"hello")]
    assert split_frames(second) == [(FrameType.DATA, 1, b"")]
    assert len(first) == HEADER_SIZE + 5


def test_message_exactly_one_payload_is_not_split() -> None:
    conn = XTransportConnection()
    frames = split_frames(conn.send_message(bytes(4080)))
    assert [(t, s, len(p)) for t, s, p in frames] == [(FrameType.DATA, 0, 4080)]


def test_long_message_is_head_plus_chunks() -> None:
    conn = XTransportConnection()
    data = os.urandom(4081)
    frames = split_frames(conn.send_message(data))
    assert [(t, s) for t, s, _ in frames] == [
        (FrameType.MESSAGE_HEAD, 0),
        (FrameType.MESSAGE_DATA, 1),
        (FrameType.MESSAGE_DATA, 2),
    ]
    assert MessageHead.decode(frames[0][2]) == MessageHead(4081, 1, 2)
    assert frames[1][2] + frames[2][2] == data
    assert len(frames[1][2]) == 4080
    # message ids count up per split message, starting at 1
    again = split_frames(conn.send_message(bytes(9000)))
    assert MessageHead.decode(again[0][2]) == MessageHead(9000, 2, 3)
    assert again[0][1] == 3


def test_wire_bytes_match_a_hand_built_crate_stream() -> None:
    # 40 bytes at frame_size 48 (32 payload bytes): MessageHead, 32-byte chunk, 8-byte chunk.
    data = bytes(range(40))
    conn = XTransportConnection(XTransportConfig(frame_size=48))
    head = struct.pack("<QQII", 40, 1, 2, 0) + bytes(8)
    expected = raw_frame(1, 0, head) + raw_frame(2, 1, data[:32]) + raw_frame(2, 2, data[32:])
    assert conn.send_message(data) == expected


def test_send_copies_mutable_input() -> None:
    conn = XTransportConnection(SMALL)
    buf = bytearray(b"x" * 100)
    conn.queue_message(buf)
    buf[:] = b"y" * 100
    peer = XTransportConnection(SMALL)
    peer.receive_data(conn.data_to_send())
    assert messages(drain(peer)) == [b"x" * 100]


def test_send_accepts_memoryview() -> None:
    conn = XTransportConnection(SMALL)
    peer = XTransportConnection(SMALL)
    peer.receive_data(conn.send_message(memoryview(b"abcdef")[1:5]))
    assert messages(drain(peer)) == [b"bcde"]


# --- two instances ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 47, 48, 49, 96, 97, 1000, 100_000])
def test_round_trip_sizes(size: int) -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    data = os.urandom(size)
    b.receive_data(a.send_message(data))
    events = drain(b)
    assert messages(events) == [data]
    assert b.recv_state is RecvState.IDLE
    assert b.next_event() is NEED_DATA


def test_byte_at_a_time() -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    sent = [os.urandom(n) for n in (5, 300, 0, 48, 49)]
    wire = b"".join(a.send_message(m) for m in sent)
    got: list[bytes] = []
    for i in range(len(wire)):
        b.receive_data(wire[i : i + 1])
        got += messages(drain(b))
    assert got == sent
    assert b.buffered == 0


def test_receive_buffer_is_compacted() -> None:
    # Consumed bytes are dropped, so the buffer of a long-lived connection stays around one
    # read in size however much has passed through it (private state, checked on purpose).
    a, b = XTransportConnection(), XTransportConnection()
    sent = [os.urandom(i % 300) for i in range(3000)]
    wire = b"".join(a.send_message(m) for m in sent)
    got: list[bytes] = []
    for start in range(0, len(wire), 1000):
        b.receive_data(wire[start : start + 1000])
        got += messages(drain(b))
        assert len(b._buf) <= 2 * (1000 + 316)
    assert got == sent
    assert b.buffered == 0


def test_many_messages_in_one_chunk_come_out_one_event_at_a_time() -> None:
    a, b = XTransportConnection(), XTransportConnection()
    sent = [str(i).encode() * i for i in range(50)]
    b.receive_data(b"".join(a.send_message(m) for m in sent))
    first = b.next_event()
    assert first == MessageReceived(b"", None)
    assert messages(drain(b)) == sent[1:]


def test_big_message_default_frames() -> None:
    a, b = XTransportConnection(), XTransportConnection()
    data = os.urandom(3 * 1024 * 1024 + 17)
    wire = a.send_message(data)
    for start in range(0, len(wire), 65536):
        b.receive_data(wire[start : start + 65536])
    events = drain(b)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MessageReceived)
    assert event.data == data
    assert event.message_id == 1


def test_both_directions_are_independent() -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    b.receive_data(a.send_message(b"ping" * 30))
    a.receive_data(b.send_message(b"pong"))
    assert messages(drain(b)) == [b"ping" * 30]
    assert messages(drain(a)) == [b"pong"]


def test_incremental_production_with_max_frames() -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    data = os.urandom(48 * 5)  # head + 5 chunks
    a.queue_message(data)
    assert a.sending
    assert a.send_state is SendState.SENDING
    with pytest.raises(LocalProtocolError, match="not fully produced"):
        a.queue_message(b"other")
    sizes = []
    got: list[bytes] = []
    while a.sending:
        chunk = a.data_to_send(max_frames=2)
        sizes.append(len(split_frames(chunk)))
        b.receive_data(chunk)
        got += messages(drain(b))
    assert sizes == [2, 2, 2]
    assert got == [data]
    assert a.data_to_send() == b""
    assert a.data_to_send(max_frames=0) == b""


# --- end of stream ----------------------------------------------------------------------


def test_clean_eof() -> None:
    a, b = XTransportConnection(), XTransportConnection()
    b.receive_data(a.send_message(b"last"))
    b.receive_data(b"")
    assert drain(b) == [MessageReceived(b"last"), ConnectionClosed()]
    assert b.next_event() == ConnectionClosed()
    assert b.recv_state is RecvState.CLOSED
    with pytest.raises(LocalProtocolError, match="after the end"):
        b.receive_data(b"more")


def test_eof_inside_a_frame() -> None:
    a, b = XTransportConnection(), XTransportConnection()
    b.receive_data(a.send_message(b"truncated")[:-1])
    b.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="ended inside a frame"):
        b.next_event()


def test_eof_inside_a_message() -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    frames = a.send_message(bytes(200))
    b.receive_data(frames[: HEADER_SIZE + 32 + HEADER_SIZE + 48])  # head + first chunk
    assert b.next_event() is NEED_DATA
    assert b.recv_state is RecvState.MESSAGE
    b.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=r"inside message 1 \(48 of 200 bytes"):
        b.next_event()


# --- malformed input ----------------------------------------------------------------------


def fails_with(wire: bytes, words: str, config: XTransportConfig = SMALL) -> None:
    conn = XTransportConnection(config)
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match=words):
        drain(conn)
    # the failure is sticky and later input is ignored
    assert conn.recv_state is RecvState.ERROR
    conn.receive_data(b"anything")
    with pytest.raises(RemoteProtocolError, match="already failed"):
        conn.next_event()


def test_bad_magic() -> None:
    fails_with(b"SSH-2.0-OpenSSH_9.2p1\r\n", "bad magic")


def test_bad_version() -> None:
    frame = bytearray(raw_frame(0, 0, b"x"))
    frame[4] = 2
    fails_with(bytes(frame), "unsupported version 2")


def test_unknown_type() -> None:
    fails_with(raw_frame(9, 0, b"x"), "unknown type 9")


def test_crc_mismatch() -> None:
    fails_with(raw_frame(0, 0, b"payload", crc=1), "CRC-32")


def test_bit_flip_in_payload_is_caught() -> None:
    frame = bytearray(XTransportConnection().send_message(b"payload"))
    frame[-1] ^= 0x01
    fails_with(bytes(frame), "CRC-32")


def test_length_over_frame_size() -> None:
    big = XTransportConnection(XTransportConfig(frame_size=128)).send_message(bytes(100))
    fails_with(big, "100-byte payload, over this side's limit of 48")


def test_length_is_checked_before_waiting_for_the_payload() -> None:
    # a header announcing 65535 bytes fails at once; the receiver does not buffer them
    header = struct.pack("<IBBIHI", 0x58545250, 1, 0, 0, 0xFFFF, 0)
    fails_with(header, "65535-byte payload")


def test_out_of_order_seq() -> None:
    a = XTransportConnection()
    first, second = a.send_message(b"1"), a.send_message(b"2")
    fails_with(second + first, "got seq 1, expected 0", XTransportConfig())
    fails_with(first + first, "got seq 0, expected 1", XTransportConfig())


def test_message_data_without_head() -> None:
    fails_with(raw_frame(2, 0, b"chunk"), "MessageData frame seq 0 without a MessageHead")


def test_data_inside_an_unfinished_message() -> None:
    head = MessageHead(60, 1, 2).encode()
    wire = raw_frame(1, 0, head) + raw_frame(2, 1, bytes(48)) + raw_frame(0, 2, b"x")
    fails_with(wire, "DATA frame seq 2 arrived while message 1 is unfinished")


def test_head_inside_an_unfinished_message() -> None:
    head = MessageHead(60, 1, 2).encode()
    wire = raw_frame(1, 0, head) + raw_frame(1, 1, head)
    fails_with(wire, "MESSAGE_HEAD frame seq 1 arrived while message 1")


def test_oversize_single_frame_message() -> None:
    cfg = XTransportConfig(frame_size=64, max_message_size=10)
    fails_with(raw_frame(0, 0, bytes(11)), "11 bytes exceeds max_message_size 10", cfg)


def test_oversize_announced_message_fails_at_the_head() -> None:
    cfg = XTransportConfig(max_message_size=1 << 20)
    head = MessageHead(1 << 40, 1, 1 << 29).encode()
    fails_with(raw_frame(1, 0, head), "exceeds max_message_size", cfg)


@pytest.mark.parametrize(
    ("total", "count"),
    [(0, 0), (10, 0), (2, 3), (97, 2)],  # no chunks; empty chunks; too much for the chunks
)
def test_inconsistent_head(total: int, count: int) -> None:
    fails_with(raw_frame(1, 0, MessageHead(total, 1, count).encode()), "inconsistent")


def test_short_head_payload() -> None:
    fails_with(raw_frame(1, 0, bytes(31)), "MessageHead payload is 31 bytes")


@pytest.mark.parametrize(
    ("count", "chunks"),
    [
        (3, [b""]),  # an empty chunk (60 bytes would still fit the 2 chunks left)
        (2, [bytes(48), bytes(13)]),  # 61 bytes where 60 were announced
        (2, [bytes(5)]),  # leaves 55 bytes for one chunk of at most 48
        (3, [bytes(48), bytes(12)]),  # leaves nothing for the third chunk
    ],
)
def test_chunks_that_cannot_add_up(count: int, chunks: list[bytes]) -> None:
    wire = raw_frame(1, 0, MessageHead(60, 1, count).encode())
    for i, chunk in enumerate(chunks):
        wire += raw_frame(2, i + 1, chunk)
    fails_with(wire, "does not fit message 1")


def test_ack_when_not_waiting_for_acks() -> None:
    fails_with(raw_frame(3, 0, struct.pack("<I", 0)), "wait_for_ack is off here")


# --- acks -----------------------------------------------------------------------------


ACKED = XTransportConfig(frame_size=64, wait_for_ack=True)


def test_every_frame_is_acked_in_order() -> None:
    a, b = XTransportConnection(ACKED), XTransportConnection(ACKED)
    data = bytes(range(100))  # head + 3 chunks
    b.receive_data(a.send_message(data) + a.send_message(b"small"))
    assert a.unacked == 5
    assert messages(drain(b)) == [data, b"small"]
    assert b.acks_owed == 5
    acks = b.data_to_send(max_frames=0)
    frames = split_frames(acks)
    # b numbers its Ack frames with its own seqs; each carries the seq it acknowledges
    assert [(t, s, struct.unpack("<I", p)[0]) for t, s, p in frames] == [
        (FrameType.ACK, i, i) for i in range(5)
    ]
    assert b.acks_owed == 0
    a.receive_data(acks)
    assert drain(a) == [AckReceived(i) for i in range(5)]
    assert a.unacked == 0
    # acks are not acked, and b's next frame continues b's numbering
    assert a.acks_owed == 0
    assert split_frames(b.send_message(b"reply"))[0][:2] == (FrameType.DATA, 5)


def test_owed_acks_go_out_before_frames_and_keep_seq_order() -> None:
    a, b = XTransportConnection(ACKED), XTransportConnection(ACKED)
    b.receive_data(a.send_message(b"request"))
    drain(b)
    b.queue_message(bytes(200))
    out = b.data_to_send(max_frames=1)
    assert [(t, s) for t, s, _ in split_frames(out)] == [
        (FrameType.ACK, 0),
        (FrameType.MESSAGE_HEAD, 1),
    ]
    a.receive_data(out)
    assert drain(a) == [AckReceived(0)]
    a.receive_data(b.data_to_send())
    assert messages(drain(a)) == [bytes(200)]
    assert b.unacked == 6
    assert a.acks_owed == 6


def test_ack_for_the_wrong_frame() -> None:
    a, b = XTransportConnection(ACKED), XTransportConnection(ACKED)
    a.send_message(b"one")
    a.send_message(b"two")
    a.receive_data(raw_frame(3, 0, struct.pack("<I", 1)))
    with pytest.raises(RemoteProtocolError, match=r"Ack for seq 1, but the oldest .* seq 0"):
        drain(a)
    b.receive_data(raw_frame(3, 0, struct.pack("<I", 0)))
    with pytest.raises(RemoteProtocolError, match="no frame is waiting"):
        drain(b)


def test_ack_with_bad_payload_length() -> None:
    a = XTransportConnection(ACKED)
    a.send_message(b"x")
    a.receive_data(raw_frame(3, 0, b"\x00\x00"))
    with pytest.raises(RemoteProtocolError, match="Ack payload is 2 bytes"):
        drain(a)


def test_acks_are_not_produced_without_wait_for_ack() -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    b.receive_data(a.send_message(bytes(500)))
    drain(b)
    assert b.acks_owed == 0
    assert b.data_to_send() == b""
    assert a.unacked == 0


# --- local misuse -------------------------------------------------------------------------


def test_send_after_close() -> None:
    conn = XTransportConnection()
    conn.close()
    conn.close()
    assert conn.send_state is SendState.CLOSED
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.send_message(b"x")


def test_close_drops_a_half_produced_message() -> None:
    conn = XTransportConnection(SMALL)
    conn.queue_message(bytes(500))
    conn.data_to_send(max_frames=1)
    conn.close()
    assert not conn.sending
    assert conn.data_to_send() == b""


def test_oversize_send() -> None:
    conn = XTransportConnection(XTransportConfig(max_message_size=100))
    with pytest.raises(LocalProtocolError, match="101 bytes exceeds max_message_size 100"):
        conn.send_message(bytes(101))
    assert conn.send_message(bytes(100))  # still usable


def test_negative_max_frames() -> None:
    with pytest.raises(LocalProtocolError, match="max_frames"):
        XTransportConnection().data_to_send(max_frames=-1)


# --- sequence numbers wrap ------------------------------------------------------------------


def test_seq_wraps_at_2_32() -> None:
    a, b = XTransportConnection(SMALL), XTransportConnection(SMALL)
    # Sending 2**32 frames is not practical; start both ends just below the wrap.
    a._send_seq = b._recv_seq = (1 << 32) - 2
    wire = a.send_message(bytes(100))  # head + 3 chunks: seqs 2**32-2, 2**32-1, 0, 1
    assert [s for _, s, _ in split_frames(wire)] == [(1 << 32) - 2, (1 << 32) - 1, 0, 1]
    b.receive_data(wire)
    assert messages(drain(b)) == [bytes(100)]
    assert decode_header(a.send_message(b"x")).seq == 2


def test_encoded_frames_are_valid_for_the_frame_decoder() -> None:
    wire = XTransportConnection().send_message(b"abc")
    assert wire == encode_frame(FrameType.DATA, 0, b"abc")
