"""The sans-IO yamux session (``YamuxCore``): two instances passing bytes, no sockets.

``Pair.pump`` moves ``data_to_send`` from each side into the other until both are quiet
and returns the events each side saw.  Frames the peer must never send (bad version,
wrong parity, ...) are written by hand with ``raw`` from the spec's byte layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from virga.errors import (
    ConfigError,
    GoAwayError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionClosedError,
    StreamClosedError,
    VirgaError,
)
from virga.yamux.config import INITIAL_STREAM_WINDOW, MAX_FRAME_PAYLOAD_LIMIT, YamuxConfig
from virga.yamux.frame import Flag, FrameType, GoAwayCode
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

KIB = 1024
WINDOW = 256 * KIB
DATA, WU, PING, GOAWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


def raw(ftype: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    """A frame written from the spec, independent of the code under test."""
    return struct.pack(">BBHII", 0, ftype, flags, stream_id, length) + payload


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    length: int
    payload: bytes = b""


def parse(data: bytes) -> list[Frame]:
    """Split bytes a core sent into frames (the test's own decoder)."""
    frames = []
    pos = 0
    while pos < len(data):
        version, ftype, flags, sid, length = struct.unpack_from(">BBHII", data, pos)
        assert version == 0
        pos += 12
        payload = b""
        if ftype == DATA:
            payload = data[pos : pos + length]
            assert len(payload) == length, "truncated data frame"
            pos += length
        frames.append(Frame(ftype, flags, sid, length, payload))
    return frames


def events_of(core: YamuxCore) -> list[Event]:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Pair:
    config: YamuxConfig = field(default_factory=YamuxConfig)
    server_config: YamuxConfig | None = None
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.client = YamuxCore(Role.CLIENT, self.config, clock=self.clock)
        self.server = YamuxCore(Role.SERVER, self.server_config or self.config, clock=self.clock)
        self.wire: list[tuple[str, Frame]] = []  # every frame that crossed, in order

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Exchange bytes until both sides are quiet; (client events, server events)."""
        client_events: list[Event] = []
        server_events: list[Event] = []
        while True:
            moved = False
            out = self.client.data_to_send()
            if out:
                self.wire += [("c>s", f) for f in parse(out)]
                self.server.receive_data(out)
                moved = True
            server_events += events_of(self.server)
            out = self.server.data_to_send()
            if out:
                self.wire += [("s>c", f) for f in parse(out)]
                self.client.receive_data(out)
                moved = True
            client_events += events_of(self.client)
            if not moved:
                return client_events, server_events

    def deliver(self, side: YamuxCore) -> list[Frame]:
        """Move what ``side`` queued to the other side (events stay queued there)."""
        out = side.data_to_send()
        other = self.server if side is self.client else self.client
        other.receive_data(out)
        frames = parse(out)
        self.wire += [("c>s" if side is self.client else "s>c", f) for f in frames]
        return frames

    def established(self) -> int:
        """Open a client stream and have the server accept it."""
        sid = self.client.open_stream()
        _, server_events = self.pump()
        assert StreamRequested(sid) in server_events
        self.server.accept_stream(sid)
        client_events, _ = self.pump()
        assert StreamEstablished(sid) in client_events
        return sid


def data_bytes(events: list[Event], sid: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == sid)


def protocol_error(core: YamuxCore, data: bytes) -> RemoteProtocolError:
    """Feed ``data``; the core must raise RemoteProtocolError and queue GoAway(1)."""
    core.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        events_of(core)
    assert info.value.goaway_code == GoAwayCode.PROTOCOL_ERROR
    assert core.state is SessionState.CLOSED
    assert core.closed
    assert parse(core.data_to_send())[-1] == Frame(GOAWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR)
    # Afterwards the session refuses everything and reads nothing more.
    with pytest.raises(SessionClosedError):
        core.open_stream()
    with pytest.raises(SessionClosedError):
        core.ping()
    core.receive_data(raw(PING, SYN, 0, 1))
    with pytest.raises(SessionClosedError):
        core.next_event()
    assert core.data_to_send() == b""
    return info.value


# -- opening and accepting -------------------------------------------------------------


def test_open_accept_ack_and_stream_ids() -> None:
    pair = Pair()
    client, server = pair.client, pair.server
    sid = client.open_stream()
    assert sid == 1
    assert client.stream_state(1) is StreamState.SYN_SENT
    assert parse(client.data_to_send()) == [Frame(WU, SYN, 1, 0)]

    server.receive_data(raw(WU, SYN, 1, 0))
    assert events_of(server) == [StreamRequested(1)]
    assert server.stream_state(1) is StreamState.SYN_RECEIVED
    server.accept_stream(1)
    assert server.stream_state(1) is StreamState.ESTABLISHED
    ack = server.data_to_send()
    assert parse(ack) == [Frame(WU, ACK, 1, 0)]
    client.receive_data(ack)
    assert events_of(client) == [StreamEstablished(1)]
    assert client.stream_state(1) is StreamState.ESTABLISHED

    assert [client.open_stream() for _ in range(3)] == [3, 5, 7]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]
    client_events, server_events = pair.pump()
    assert [e for e in client_events if isinstance(e, StreamRequested)] == [
        StreamRequested(2),
        StreamRequested(4),
        StreamRequested(6),
    ]
    assert [e for e in server_events if isinstance(e, StreamRequested)] == [
        StreamRequested(3),
        StreamRequested(5),
        StreamRequested(7),
    ]


def test_accepting_twice_is_a_local_error() -> None:
    pair = Pair()
    sid = pair.established()
    with pytest.raises(LocalProtocolError, match="already accepted"):
        pair.server.accept_stream(sid)


def test_unknown_stream_commands_raise_stream_closed() -> None:
    core = YamuxCore(Role.CLIENT)
    with pytest.raises(StreamClosedError):
        core.send_data(9, b"x")
    with pytest.raises(StreamClosedError):
        core.close_stream(9)
    with pytest.raises(StreamClosedError):
        core.accept_stream(9)
    core.reset_stream(9)  # a no-op for a stream already gone
    core.consume(9, 5)
    assert core.data_to_send() == b""
    assert core.stream_state(9) is StreamState.CLOSED
    assert core.send_window(9) == 0
    assert core.recv_window(9) == 0


def test_data_may_ride_on_the_syn_and_before_the_ack() -> None:
    pair = Pair()
    client, server = pair.client, pair.server
    sid = client.open_stream()
    assert client.send_data(sid, b"early") == 5  # before the ACK, as hashicorp allows
    _, server_events = pair.pump()
    assert server_events == [StreamRequested(sid), DataReceived(sid, b"early")]

    # A peer may also put its SYN on the Data frame itself.
    server.receive_data(raw(DATA, SYN, 9, 3, b"abc"))
    assert events_of(server) == [StreamRequested(9), DataReceived(9, b"abc")]
    assert server.recv_window(9) == WINDOW - 3
    server.accept_stream(9)
    assert parse(server.data_to_send()) == [Frame(WU, ACK, 9, 0)]


def test_first_frame_of_an_accepted_stream_carries_the_ack() -> None:
    pair = Pair()
    client, server = pair.client, pair.server
    client.open_stream()
    pair.pump()
    server.accept_stream(1)
    server.send_data(1, b"x")
    frames = parse(server.data_to_send())
    assert frames == [Frame(WU, ACK, 1, 0), Frame(DATA, 0, 1, 1, b"x")]


# -- data and windows ------------------------------------------------------------------


def test_data_both_ways() -> None:
    pair = Pair()
    sid = pair.established()
    assert pair.client.send_data(sid, b"hello ") == 6
    assert pair.client.send_data(sid, bytearray(b"server")) == 6
    assert pair.server.send_data(sid, memoryview(b"hi client")) == 9
    client_events, server_events = pair.pump()
    assert data_bytes(server_events, sid) == b"hello server"
    assert data_bytes(client_events, sid) == b"hi client"


def test_send_data_stops_at_the_peer_window() -> None:
    pair = Pair()
    sid = pair.established()
    payload = bytes(range(256)) * (300 * 4)  # 300 KiB
    assert pair.client.send_data(sid, payload) == WINDOW
    assert pair.client.send_window(sid) == 0
    assert pair.client.send_data(sid, payload[WINDOW:]) == 0
    assert pair.client.send_data(sid, b"") == 0
    _, server_events = pair.pump()
    assert data_bytes(server_events, sid) == payload[:WINDOW]
    assert pair.server.recv_window(sid) == 0


def test_window_update_only_after_half_is_consumed() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.send_data(sid, b"\x00" * WINDOW)
    pair.pump()
    server = pair.server

    server.consume(sid, WINDOW // 2 - 1)
    assert server.data_to_send() == b""  # less than half: no update yet
    server.consume(sid, 1)
    assert pair.deliver(server) == [Frame(WU, 0, sid, WINDOW // 2)]
    assert server.recv_window(sid) == WINDOW // 2

    client_events, _ = pair.pump()
    assert client_events == [WindowUpdated(sid, WINDOW // 2)]
    assert pair.client.send_window(sid) == WINDOW // 2

    # Consuming the rest grants the next half, in one update of exactly that size.
    server.consume(sid, WINDOW // 2)
    assert pair.deliver(server) == [Frame(WU, 0, sid, WINDOW // 2)]
    pair.pump()
    assert pair.client.send_window(sid) == WINDOW


def test_consuming_more_than_buffered_is_a_local_error() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.send_data(sid, b"abc")
    pair.pump()
    with pytest.raises(LocalProtocolError, match="only 3 are buffered"):
        pair.server.consume(sid, 4)
    with pytest.raises(LocalProtocolError):
        pair.server.consume(sid, -1)


def test_small_reads_add_up_to_one_update() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.send_data(sid, b"\x01" * WINDOW)
    pair.pump()
    updates = []
    for _ in range(WINDOW // 4096):
        pair.server.consume(sid, 4096)
        updates += [f for f in parse(pair.server.data_to_send()) if f.type == WU]
    assert updates == [Frame(WU, 0, sid, WINDOW // 2), Frame(WU, 0, sid, WINDOW // 2)]


def test_frames_are_split_at_max_frame_payload() -> None:
    pair = Pair(YamuxConfig(max_frame_payload=1000))
    sid = pair.established()
    pair.client.send_data(sid, b"z" * 2500)
    frames = parse(pair.client.data_to_send())
    assert [(f.type, f.length) for f in frames] == [(DATA, 1000), (DATA, 1000), (DATA, 500)]


def test_default_split_is_64_kib() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.send_data(sid, b"y" * WINDOW)
    frames = parse(pair.client.data_to_send())
    assert [f.length for f in frames] == [64 * KIB] * 4


def test_frames_never_exceed_one_mib() -> None:
    big = YamuxConfig(max_window=4 * MAX_FRAME_PAYLOAD_LIMIT, max_frame_payload=1024 * KIB)
    pair = Pair(big)
    sid = pair.established()
    assert pair.client.send_window(sid) == 4 * MAX_FRAME_PAYLOAD_LIMIT  # advertised with the ACK
    sent = pair.client.send_data(sid, b"q" * (3 * MAX_FRAME_PAYLOAD_LIMIT + 5))
    assert sent == 3 * MAX_FRAME_PAYLOAD_LIMIT + 5
    frames = parse(pair.client.data_to_send())
    assert max(f.length for f in frames) == MAX_FRAME_PAYLOAD_LIMIT
    assert sum(f.length for f in frames) == sent
    with pytest.raises(ConfigError, match="max_frame_payload"):
        YamuxConfig(max_frame_payload=MAX_FRAME_PAYLOAD_LIMIT + 1)


def test_larger_max_window_is_advertised_by_both_sides() -> None:
    big = YamuxConfig(max_window=1024 * KIB)
    pair = Pair(big)
    sid = pair.client.open_stream()
    assert parse(pair.client.data_to_send()) == [Frame(WU, SYN, sid, 1024 * KIB - WINDOW)]
    pair.server.receive_data(raw(WU, SYN, sid, 1024 * KIB - WINDOW))
    events_of(pair.server)
    assert pair.server.send_window(sid) == 1024 * KIB
    pair.server.accept_stream(sid)
    assert parse(pair.server.data_to_send()) == [Frame(WU, ACK, sid, 1024 * KIB - WINDOW)]
    assert pair.server.recv_window(sid) == 1024 * KIB


def test_only_data_frames_count_against_the_window() -> None:
    pair = Pair()
    sid = pair.established()
    client, server = pair.client, pair.server
    for _ in range(10):
        client.ping()
        server.ping()
    client.send_data(sid, b"")
    server.receive_data(raw(WU, 0, sid, 0))  # an empty window update changes nothing
    client.go_away(GoAwayCode.NORMAL)
    pair.pump()
    assert client.send_window(sid) == WINDOW
    assert client.recv_window(sid) == WINDOW
    assert server.send_window(sid) == WINDOW
    assert server.recv_window(sid) == WINDOW
    client.send_data(sid, b"12345")
    pair.pump()
    assert client.send_window(sid) == WINDOW - 5
    assert server.recv_window(sid) == WINDOW - 5


def test_window_update_delta_adds_to_the_send_window() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.receive_data(raw(WU, 0, sid, 1000))
    assert events_of(pair.client) == [WindowUpdated(sid, 1000)]
    assert pair.client.send_window(sid) == WINDOW + 1000


# -- half-close, reset -----------------------------------------------------------------


def test_fin_client_first_then_server() -> None:
    pair = Pair()
    sid = pair.established()
    client, server = pair.client, pair.server
    client.send_data(sid, b"request")
    client.close_stream(sid)
    assert client.stream_state(sid) is StreamState.LOCAL_CLOSE
    with pytest.raises(StreamClosedError, match="closed for writing"):
        client.send_data(sid, b"more")
    client.close_stream(sid)  # idempotent: no second FIN
    _, server_events = pair.pump()
    assert server_events == [DataReceived(sid, b"request"), StreamEnded(sid)]
    assert server.stream_state(sid) is StreamState.REMOTE_CLOSE
    assert [f for d, f in pair.wire if f.flags & FIN] == [Frame(WU, FIN, sid, 0)]

    server.send_data(sid, b"response")  # the other direction goes on
    server.close_stream(sid)
    assert sid not in server.stream_ids()  # both FINs: forgotten
    client_events, _ = pair.pump()
    assert client_events == [DataReceived(sid, b"response"), StreamEnded(sid)]
    assert client.stream_ids() == []
    assert client.stream_state(sid) is StreamState.CLOSED


def test_fin_server_first_then_client() -> None:
    pair = Pair()
    sid = pair.established()
    pair.server.close_stream(sid)
    client_events, _ = pair.pump()
    assert client_events == [StreamEnded(sid)]
    assert pair.client.stream_state(sid) is StreamState.REMOTE_CLOSE
    assert pair.client.send_data(sid, b"still") == 5
    pair.client.close_stream(sid)
    _, server_events = pair.pump()
    assert server_events == [DataReceived(sid, b"still"), StreamEnded(sid)]
    assert pair.client.stream_ids() == []
    assert pair.server.stream_ids() == []


def test_fin_on_a_data_frame_and_both_fins_crossing() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.close_stream(sid)
    pair.server.close_stream(sid)  # before either FIN arrives
    client_events, server_events = pair.pump()
    assert client_events == [StreamEnded(sid)]
    assert server_events == [StreamEnded(sid)]
    assert pair.client.stream_ids() == pair.server.stream_ids() == []

    sid = pair.established()
    pair.server.receive_data(raw(DATA, FIN, sid, 4, b"last"))
    assert events_of(pair.server) == [DataReceived(sid, b"last"), StreamEnded(sid)]


def test_no_window_update_after_the_peer_fin() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.send_data(sid, b"a" * WINDOW)
    pair.client.close_stream(sid)
    pair.pump()
    pair.server.consume(sid, WINDOW)
    assert pair.server.data_to_send() == b""


def test_data_after_fin_is_a_protocol_error() -> None:
    pair = Pair()
    sid = pair.established()
    pair.server.receive_data(raw(WU, FIN, sid, 0))
    assert events_of(pair.server) == [StreamEnded(sid)]
    err = protocol_error(pair.server, raw(DATA, 0, sid, 1, b"x"))
    assert "after its FIN" in str(err)


def test_reset_forgets_the_stream_on_both_sides() -> None:
    pair = Pair()
    sid = pair.established()
    pair.client.send_data(sid, b"partial")
    pair.client.reset_stream(sid)
    assert pair.client.stream_ids() == []
    _, server_events = pair.pump()
    assert server_events == [DataReceived(sid, b"partial"), StreamReset(sid)]
    assert pair.server.stream_ids() == []
    assert [f for d, f in pair.wire if f.flags & RST] == [Frame(WU, RST, sid, 0)]
    with pytest.raises(StreamClosedError):
        pair.server.send_data(sid, b"late")
    pair.client.reset_stream(sid)  # already gone: nothing queued
    assert pair.client.data_to_send() == b""


def test_frames_for_a_reset_stream_are_discarded() -> None:
    pair = Pair()
    sid = pair.established()
    pair.server.reset_stream(sid)
    pair.server.data_to_send()  # the RST is "in flight" and the client keeps sending
    pair.server.receive_data(raw(DATA, 0, sid, 3, b"old") + raw(WU, 0, sid, 99))
    pair.server.receive_data(raw(WU, FIN, sid, 0))
    assert events_of(pair.server) == []
    assert pair.server.data_to_send() == b""
    assert pair.server.state is SessionState.OPEN


def test_reset_of_an_unaccepted_stream_frees_its_backlog_slot() -> None:
    pair = Pair(YamuxConfig(accept_backlog=1))
    pair.client.open_stream()
    pair.pump()
    pair.client.reset_stream(1)
    pair.pump()
    pair.client.open_stream()
    client_events, server_events = pair.pump()
    assert server_events == [StreamRequested(3)]
    assert client_events == []


# -- ping, GoAway ----------------------------------------------------------------------


def test_ping_pong_opaque() -> None:
    pair = Pair()
    first = pair.client.ping()
    second = pair.client.ping()
    assert first != second
    client_events, server_events = pair.pump()
    assert client_events == [PongReceived(first), PongReceived(second)]
    assert server_events == []
    assert [f for d, f in pair.wire if d == "s>c"] == [
        Frame(PING, ACK, 0, first),
        Frame(PING, ACK, 0, second),
    ]

    # The opaque value is echoed exactly, whatever it is.
    pair.server.receive_data(raw(PING, SYN, 0, 0xDEADBEEF))
    assert events_of(pair.server) == []
    assert parse(pair.server.data_to_send()) == [Frame(PING, ACK, 0, 0xDEADBEEF)]
    pair.server.receive_data(raw(PING, ACK, 0, 0xFFFFFFFF))
    assert events_of(pair.server) == [PongReceived(0xFFFFFFFF)]


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(0, "normal termination"), (1, "protocol error"), (2, "internal error")],
)
def test_goaway_codes(code: int, meaning: str) -> None:
    pair = Pair()
    sid = pair.established()
    pair.server.go_away(code)
    assert pair.server.state is SessionState.GOING_AWAY
    assert pair.server.local_goaway == code
    client_events, _ = pair.pump()
    assert client_events == [GoAwayReceived(code)]
    assert client_events[0].meaning == meaning  # type: ignore[union-attr]
    assert pair.client.remote_goaway == code
    assert pair.client.state is SessionState.GOING_AWAY
    with pytest.raises(GoAwayError, match=meaning) as info:
        pair.client.open_stream()
    assert info.value.code == code
    # Existing streams go on in both directions.
    pair.client.send_data(sid, b"ping")
    pair.server.send_data(sid, b"pong")
    client_events, server_events = pair.pump()
    assert data_bytes(server_events, sid) == b"ping"
    assert data_bytes(client_events, sid) == b"pong"


def test_goaway_with_an_unknown_code_is_reported_not_fatal() -> None:
    core = YamuxCore(Role.CLIENT)
    core.receive_data(raw(GOAWAY, 0, 0, 77))
    (event,) = events_of(core)
    assert event == GoAwayReceived(77)
    assert isinstance(event, GoAwayReceived)
    assert event.meaning == "unknown code 77"


def test_open_after_local_goaway_is_a_local_error() -> None:
    core = YamuxCore(Role.CLIENT)
    core.go_away()
    core.go_away()  # only one GoAway goes out
    assert parse(core.data_to_send()) == [Frame(GOAWAY, 0, 0, 0)]
    with pytest.raises(LocalProtocolError):
        core.open_stream()


def test_syn_after_local_goaway_is_answered_with_rst() -> None:
    pair = Pair()
    pair.client.open_stream()  # crosses the server's GoAway on the wire
    pair.server.go_away()
    client_events, server_events = pair.pump()
    assert server_events == []
    assert sorted(map(repr, client_events)) == sorted(
        map(repr, [GoAwayReceived(0), StreamReset(1)])
    )
    assert ("s>c", Frame(WU, RST, 1, 0)) in pair.wire
    assert pair.server.state is SessionState.GOING_AWAY  # the session survives
    assert pair.client.stream_ids() == []


def test_close_queues_goaway_normal_once() -> None:
    core = YamuxCore(Role.SERVER)
    core.close()
    core.close()
    assert parse(core.data_to_send()) == [Frame(GOAWAY, 0, 0, 0)]
    assert core.closed
    with pytest.raises(SessionClosedError):
        core.open_stream()
    with pytest.raises(SessionClosedError):
        core.go_away()
    core.receive_data(raw(PING, SYN, 0, 1))  # ignored once closed
    assert core.next_event() is None
    assert core.data_to_send() == b""


# -- backlog ---------------------------------------------------------------------------


def test_syns_beyond_the_backlog_get_rst() -> None:
    pair = Pair(YamuxConfig(accept_backlog=2))
    for _ in range(4):
        pair.client.open_stream()
    client_events, server_events = pair.pump()
    assert server_events == [StreamRequested(1), StreamRequested(3)]
    assert client_events == [StreamReset(5), StreamReset(7)]
    assert pair.server.state is SessionState.OPEN
    assert sorted(pair.client.stream_ids()) == [1, 3]

    pair.server.accept_stream(1)  # frees a slot
    pair.client.open_stream()
    client_events, server_events = pair.pump()
    assert server_events == [StreamRequested(9)]
    assert client_events == [StreamEstablished(1)]
    pair.client.open_stream()
    client_events, _ = pair.pump()
    assert client_events == [StreamReset(11)]


# -- protocol errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (struct.pack(">BBHII", 1, WU, SYN, 1, 0), "version 1"),
        (raw(7, 0, 1, 0), "unknown yamux frame type 7"),
        (raw(WU, SYN, 2, 0), "parity"),
        (raw(PING, SYN, 1, 5), "ping on stream 1"),
        (raw(GOAWAY, 0, 3, 0), "GoAway on stream 3"),
        (raw(WU, SYN, 0, 0), "stream id 0"),
        (raw(DATA, 0, 0, 1, b"x"), "stream id 0"),
    ],
    ids=[
        "bad-version",
        "unknown-type",
        "wrong-parity",
        "ping-on-stream",
        "goaway-on-stream",
        "syn-on-zero",
        "data-on-zero",
    ],
)
def test_protocol_errors_answered_with_goaway_1(frame: bytes, message: str) -> None:
    server = YamuxCore(Role.SERVER)
    err = protocol_error(server, frame)
    assert message in str(err)
    assert server.close_cause is err


def test_client_rejects_odd_syn() -> None:
    client = YamuxCore(Role.CLIENT)
    protocol_error(client, raw(WU, SYN, 3, 0))


def test_duplicate_stream_id() -> None:
    server = YamuxCore(Role.SERVER)
    server.receive_data(raw(WU, SYN, 1, 0))
    assert events_of(server) == [StreamRequested(1)]
    err = protocol_error(server, raw(WU, SYN, 1, 0))
    assert "duplicate stream id 1" in str(err)


def test_window_exceeded() -> None:
    server = YamuxCore(Role.SERVER)
    server.receive_data(raw(WU, SYN, 1, 0) + raw(DATA, 0, 1, WINDOW - 10, b"\x00" * (WINDOW - 10)))
    assert events_of(server)[0] == StreamRequested(1)
    err = protocol_error(server, raw(DATA, 0, 1, 11, b"x" * 11))
    assert "receive window exceeded" in str(err)


def test_window_is_exactly_enough() -> None:
    server = YamuxCore(Role.SERVER)
    server.receive_data(raw(WU, SYN, 1, 0) + raw(DATA, 0, 1, WINDOW, b"\x00" * WINDOW))
    events = events_of(server)
    assert sum(len(e.data) for e in events if isinstance(e, DataReceived)) == WINDOW
    assert server.recv_window(1) == 0


def test_events_before_the_bad_frame_are_still_delivered() -> None:
    server = YamuxCore(Role.SERVER)
    server.receive_data(raw(WU, SYN, 1, 0) + raw(DATA, 0, 1, 2, b"ok") + raw(9, 0, 0, 0))
    assert server.next_event() == StreamRequested(1)
    assert server.next_event() == DataReceived(1, b"ok")
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_huge_data_length_fails_as_soon_as_the_header_is_in() -> None:
    server = YamuxCore(Role.SERVER)
    server.receive_data(raw(WU, SYN, 1, 0))
    events_of(server)
    server.receive_data(struct.pack(">BBHII", 0, DATA, 0, 1, 0xFFFFFFFF))
    with pytest.raises(RemoteProtocolError, match="exceeds any window"):
        server.next_event()


def test_protocol_error_closes_commands_with_the_cause() -> None:
    server = YamuxCore(Role.SERVER)
    server.receive_data(raw(WU, SYN, 1, 0))
    events_of(server)
    err = protocol_error(server, raw(9, 0, 0, 0))
    with pytest.raises(SessionClosedError) as info:
        server.send_data(1, b"x")
    assert info.value.__cause__ is err
    assert server.stream_ids() == []


# -- chunking --------------------------------------------------------------------------


def conversation() -> tuple[bytes, list[Event]]:
    """A client's bytes for a busy exchange, and the events a server sees feeding them at once."""
    pair = Pair(YamuxConfig(max_frame_payload=700))
    a = pair.client.open_stream()
    b = pair.client.open_stream()
    pair.client.send_data(a, b"alpha" * 400)
    pair.client.ping()
    pair.client.send_data(b, bytes(range(256)) * 10)
    pair.client.close_stream(a)
    pair.client.reset_stream(b)
    c = pair.client.open_stream()
    pair.client.send_data(c, b"gamma")
    pair.client.go_away(GoAwayCode.INTERNAL_ERROR)
    wire = pair.client.data_to_send()
    server = YamuxCore(Role.SERVER)
    server.receive_data(wire)
    return wire, events_of(server)


def merge(events: list[Event]) -> list[Event]:
    """Coalesce consecutive DataReceived on one stream (chunking may split payloads)."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.stream_id == event.stream_id
        ):
            out[-1] = DataReceived(event.stream_id, last.data + event.data)
        else:
            out.append(event)
    return out


def test_byte_at_a_time_gives_the_same_events_and_replies() -> None:
    wire, expected = conversation()
    assert GoAwayReceived(2) in expected
    whole = YamuxCore(Role.SERVER)
    whole.receive_data(wire)
    events_of(whole)
    expected_out = whole.data_to_send()

    server = YamuxCore(Role.SERVER)
    events: list[Event] = []
    for i in range(len(wire)):
        server.receive_data(wire[i : i + 1])
        events += events_of(server)
    assert merge(events) == merge(expected)
    assert server.data_to_send() == expected_out


@pytest.mark.parametrize("size", [5, 11, 12, 13, 700, 4096])
def test_fixed_chunk_sizes_give_the_same_events(size: int) -> None:
    wire, expected = conversation()
    server = YamuxCore(Role.SERVER)
    events: list[Event] = []
    for i in range(0, len(wire), size):
        server.receive_data(memoryview(wire)[i : i + size])
        events += events_of(server)
    assert merge(events) == merge(expected)


# -- auto-tuning -----------------------------------------------------------------------


def fill_and_consume_half(pair: Pair, sid: int) -> list[Frame]:
    window = pair.client.send_window(sid)
    pair.client.send_data(sid, b"\x00" * window)
    pair.pump()
    pair.server.consume(sid, window // 2)
    return [f for f in pair.deliver(pair.server) if f.type == WU]


def test_auto_tune_doubles_the_window_when_drained_fast() -> None:
    config = YamuxConfig(auto_tune_window=True, max_window=1024 * KIB)
    pair = Pair(config)
    sid = pair.established()
    assert pair.client.send_window(sid) == WINDOW  # starts at 256 KiB, not max_window
    pair.server.rtt = 0.1
    pair.clock.now += 0.05  # drained well within two round trips
    assert fill_and_consume_half(pair, sid) == [Frame(WU, 0, sid, WINDOW // 2 + WINDOW)]
    pair.pump()
    assert pair.client.send_window(sid) == WINDOW // 2 + WINDOW

    # The receiver now aims at 512 KiB: the rest of the first fill (128 KiB) is less than
    # half of that, so no update; a full window drained fast doubles again, to the cap.
    pair.server.consume(sid, WINDOW // 2)
    assert pair.server.data_to_send() == b""
    pair.client.send_data(sid, b"\x00" * pair.client.send_window(sid))
    pair.pump()
    pair.server.consume(sid, WINDOW // 2 + WINDOW)
    assert [f for f in pair.deliver(pair.server) if f.type == WU] == [Frame(WU, 0, sid, 1024 * KIB)]
    pair.pump()
    assert pair.client.send_window(sid) == 1024 * KIB

    # Never beyond max_window, however fast the reader is.
    for _ in range(3):
        pair.client.send_data(sid, b"\x00" * pair.client.send_window(sid))
        _, events = pair.pump()
        pair.server.consume(sid, sum(len(e.data) for e in events if isinstance(e, DataReceived)))
        pair.pump()
        assert pair.server.recv_window(sid) == 1024 * KIB
        assert pair.client.send_window(sid) == 1024 * KIB


def test_auto_tune_keeps_the_window_when_drained_slowly() -> None:
    pair = Pair(YamuxConfig(auto_tune_window=True, max_window=1024 * KIB))
    sid = pair.established()
    pair.server.rtt = 0.1
    pair.clock.now += 0.5  # slower than two round trips
    assert fill_and_consume_half(pair, sid) == [Frame(WU, 0, sid, WINDOW // 2)]


def test_auto_tune_needs_an_rtt() -> None:
    pair = Pair(YamuxConfig(auto_tune_window=True, max_window=1024 * KIB))
    sid = pair.established()
    assert pair.server.rtt is None
    assert fill_and_consume_half(pair, sid) == [Frame(WU, 0, sid, WINDOW // 2)]


def test_without_auto_tune_the_window_stays_at_max_window() -> None:
    pair = Pair(YamuxConfig(max_window=WINDOW))
    sid = pair.established()
    pair.server.rtt = 0.1
    assert fill_and_consume_half(pair, sid) == [Frame(WU, 0, sid, WINDOW // 2)]


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("accept_backlog", 0),
        ("keepalive_interval", 0),
        ("keepalive_interval", -1.0),
        ("connection_write_timeout", 0),
        ("stream_open_timeout", -1),
        ("stream_close_timeout", -0.5),
        ("max_window", WINDOW - 1),
        ("max_window", 1 << 32),
        ("max_frame_payload", 0),
        ("max_frame_payload", MAX_FRAME_PAYLOAD_LIMIT + 1),
    ],
)
def test_config_errors_name_the_field(field_name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field_name) as info:
        YamuxConfig(**{field_name: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, VirgaError)
    assert repr(value) in str(info.value)


def test_config_defaults_follow_hashicorp() -> None:
    config = YamuxConfig()
    assert INITIAL_STREAM_WINDOW == WINDOW
    assert config.accept_backlog == 256
    assert config.max_window == WINDOW
    assert config.max_frame_payload == 64 * KIB
    assert config.keepalive_interval == 30.0
    assert config.connection_write_timeout == 10.0
    assert config.stream_open_timeout == 75.0
    assert config.stream_close_timeout == 300.0
    assert config.as_dict()["accept_backlog"] == 256
    # Zero disables the open and close timeouts.
    YamuxConfig(stream_open_timeout=0, stream_close_timeout=0)


def test_flag_constants_used_here_match_the_module() -> None:
    assert (SYN, ACK, FIN, RST) == (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST)
    assert tuple(FrameType) == (DATA, WU, PING, GOAWAY)


@pytest.mark.parametrize("stream_id", [1, 5], ids=["open-stream", "unknown-stream"])
def test_oversized_data_frame_fails_however_it_is_chunked(stream_id: int) -> None:
    """No window is ever larger than max_window, so such a frame is an error even for a
    stream that is gone, and whether or not the whole payload is already buffered."""
    frame = raw(DATA, 0, stream_id, WINDOW + 1, b"\x00" * (WINDOW + 1))
    # The error comes with the header, never after WINDOW + 1 bytes of buffering.
    splits = [[frame], [frame[:12]], [frame[:5], frame[5:12]], [frame[:20]]]
    for pieces in splits:
        server = YamuxCore(Role.SERVER)
        server.receive_data(raw(WU, SYN, 1, 0))
        events_of(server)
        for piece in pieces[:-1]:
            server.receive_data(piece)
            assert events_of(server) == []
        server.receive_data(pieces[-1])
        with pytest.raises(RemoteProtocolError, match="exceeds any window"):
            events_of(server)


def test_stream_ids_run_out_at_32_bits() -> None:
    core = YamuxCore(Role.CLIENT)
    core._next_id = 0xFFFFFFFF  # skip four billion opens
    assert core.open_stream() == 0xFFFFFFFF
    with pytest.raises(LocalProtocolError, match="exhausted"):
        core.open_stream()
