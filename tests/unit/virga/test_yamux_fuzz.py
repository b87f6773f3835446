"""Fuzzing the yamux core with hypothesis: hostile bytes and honest-but-random use.

* random bytes, and sequences of well-formed frames with mutations (bit flips,
  truncation, overwritten Length fields, dropped and duplicated bytes), fed in random
  chunk sizes: the core yields events or raises a ``VirgaError``, nothing else; it
  never buffers more than one frame's worth of unparsed input; it never hangs;
* two cores driven by random valid commands: no protocol error ever, and every byte
  a stream's writer sent arrives in order at its reader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from virga.errors import GoAwayError, LocalProtocolError, RemoteProtocolError, VirgaError
from virga.yamux.config import YamuxConfig
from virga.yamux.frame import HEADER_SIZE
from virga.yamux.session import (
    DataReceived,
    Event,
    Role,
    StreamEnded,
    StreamRequested,
    StreamReset,
    YamuxCore,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = YamuxConfig(max_window=256 * 1024, accept_backlog=4, max_frame_payload=512)


def frame(ftype: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BBHII", 0, ftype, flags, stream_id, length) + payload


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One mostly well-formed frame, as a peer might send it."""
    ftype = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    flags = draw(st.sampled_from([0, 1, 2, 4, 8, 1 | 4, 2 | 8, 0xF, 0x10]))
    stream_id = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 0xFFFFFFFF]))
    if ftype == 0:
        payload = draw(st.binary(max_size=300))
        return frame(0, flags, stream_id, len(payload), payload)
    if ftype == 2:
        stream_id = draw(st.sampled_from([0, 0, 0, 1]))
    length = draw(st.integers(0, 0xFFFFFFFF) | st.integers(0, 4))
    return frame(ftype, flags, stream_id, length)


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(frames(), max_size=25))))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "truncate", "length", "drop", "dup"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "length" and pos + 4 <= len(data):
            data[pos : pos + 4] = struct.pack(">I", draw(st.integers(0, 0xFFFFFFFF)))
        elif kind == "drop":
            del data[pos]
        elif kind == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 12))]
    return bytes(data)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        out.append(data[pos : pos + size])
        pos += size
        i += 1
    return out


def feed(core: YamuxCore, chunks: list[bytes]) -> list[Event]:
    """Feed chunks, answering like an adapter; only VirgaErrors may come out."""
    events: list[Event] = []
    failed = False
    for chunk in chunks:
        core.receive_data(chunk)
        try:
            while (event := core.next_event()) is not None:
                events.append(event)
                if isinstance(event, StreamRequested):
                    core.accept_stream(event.stream_id)
                elif isinstance(event, DataReceived):
                    core.consume(event.stream_id, len(event.data))
        except RemoteProtocolError:
            assert not failed, "RemoteProtocolError raised twice"
            failed = True
            assert core.closed
        except VirgaError:
            # e.g. accepting a stream the same batch reset: typed, and the session goes on
            # or is closed; either way the core must still answer.
            pass
        core.data_to_send()
        # Everything complete was parsed: what is left is less than one frame.
        assert len(core._in) - core._pos < HEADER_SIZE + core.config.max_window
    return events


@FUZZ
@given(data=st.binary(max_size=2000), sizes=st.lists(st.integers(1, 64), max_size=8))
def test_random_bytes(data: bytes, sizes: list[int]) -> None:
    for role in Role:
        feed(YamuxCore(role, SMALL), chunked(data, sizes))


@FUZZ
@given(data=mutated_streams(), sizes=st.lists(st.integers(1, 700), max_size=8))
def test_mutated_frame_sequences(data: bytes, sizes: list[int]) -> None:
    for role in Role:
        feed(YamuxCore(role, SMALL), chunked(data, sizes))


@FUZZ
@given(
    prefix=st.lists(frames(), max_size=5),
    length=st.integers(256 * 1024 + 1, 0xFFFFFFFF),
    stream_id=st.integers(0, 0xFFFFFFFF),
    flags=st.integers(0, 0xFFFF),
)
def test_oversized_data_frame_fails_fast(
    prefix: list[bytes], length: int, stream_id: int, flags: int
) -> None:
    """A Length no window allows fails the session on its header, before any payload."""
    core = YamuxCore(Role.SERVER, SMALL)
    before = b"".join(prefix)
    feed(core, [before])
    if core.closed:
        return
    core.receive_data(frame(0, flags, stream_id, length))
    try:
        while core.next_event() is not None:
            pass
    except RemoteProtocolError:
        pass
    assert core.closed
    assert len(core._in) == 0


def test_buffer_is_compacted_under_a_steady_stream() -> None:
    """Chunks that always end mid-frame must not grow the input buffer without bound."""
    core = YamuxCore(Role.SERVER)
    core.receive_data(frame(1, 1, 1, 0))
    core.next_event()
    core.accept_stream(1)
    one = frame(0, 0, 1, 1000, b"x" * 1000)
    wire = one * 10_000  # 10 MB of data frames, fed in 4093-byte chunks
    largest = 0
    got = 0
    for pos in range(0, len(wire), 4093):
        core.receive_data(wire[pos : pos + 4093])
        while (event := core.next_event()) is not None:
            assert isinstance(event, DataReceived)
            got += len(event.data)
            core.consume(1, len(event.data))
        core.data_to_send()
        largest = max(largest, len(core._in))
    assert got == 10_000 * 1000
    assert largest < 3 * 1024 * 1024


# -- two honest cores ------------------------------------------------------------------


@dataclass
class Flow:
    """One direction of one stream: what its writer sent, what its reader got."""

    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    unconsumed: int = 0
    writer_closed: bool = False
    reader_ended: bool = False
    reset: bool = False


class TwoCores(RuleBasedStateMachine):
    """A client and a server core used correctly, in random order, with random chunking
    of the bytes between them: no protocol error may ever happen (``next_event`` raising
    fails the test), windows agree, and every stream delivers its bytes in order."""

    def __init__(self) -> None:
        super().__init__()
        config = YamuxConfig(max_frame_payload=16 * 1024)
        self.cores = {True: YamuxCore(Role.CLIENT, config), False: YamuxCore(Role.SERVER, config)}
        self.flows: dict[tuple[bool, int], Flow] = {}  # (writer is the client, stream id)
        self.in_flight = {True: bytearray(), False: bytearray()}  # bytes towards the client?
        self.counter = 0

    def _stream(self, client: bool, which: int) -> int | None:
        ids = sorted(self.cores[client].stream_ids())
        return ids[which % len(ids)] if ids else None

    def _deliver(self, to_client: bool, limit: int | None) -> None:
        self.in_flight[to_client] += self.cores[not to_client].data_to_send()
        buf = self.in_flight[to_client]
        n = len(buf) if limit is None else min(limit, len(buf))
        chunk, self.in_flight[to_client] = bytes(buf[:n]), buf[n:]
        core = self.cores[to_client]
        core.receive_data(chunk)
        while (event := core.next_event()) is not None:
            if isinstance(event, StreamRequested):
                core.accept_stream(event.stream_id)
            elif isinstance(event, DataReceived):
                flow = self.flows[(not to_client, event.stream_id)]
                flow.received += event.data
                flow.unconsumed += len(event.data)
            elif isinstance(event, StreamEnded):
                self.flows[(not to_client, event.stream_id)].reader_ended = True
            elif isinstance(event, StreamReset):
                self.flows[(True, event.stream_id)].reset = True
                self.flows[(False, event.stream_id)].reset = True

    @rule(client=st.booleans())
    def open(self, client: bool) -> None:
        core = self.cores[client]
        if core.remote_goaway is not None:
            with pytest.raises(GoAwayError):
                core.open_stream()
        elif core.local_goaway is not None:
            with pytest.raises(LocalProtocolError):
                core.open_stream()
        else:
            sid = core.open_stream()
            self.flows[(True, sid)] = Flow()
            self.flows[(False, sid)] = Flow()

    @rule(
        client=st.booleans(),
        which=st.integers(0, 15),
        size=st.integers(0, 300) | st.integers(0, 300_000),
    )
    def send(self, client: bool, which: int, size: int) -> None:
        sid = self._stream(client, which)
        if sid is None or self.flows[(client, sid)].writer_closed:
            return
        self.counter += 1
        data = bytes([self.counter % 251]) * size
        n = self.cores[client].send_data(sid, data)
        assert 0 <= n <= size
        self.flows[(client, sid)].sent += data[:n]

    @rule(client=st.booleans(), which=st.integers(0, 15), size=st.integers(0, 300_000))
    def consume(self, client: bool, which: int, size: int) -> None:
        sid = self._stream(client, which)
        if sid is None:
            return
        flow = self.flows[(not client, sid)]  # the direction this side reads
        n = min(size, flow.unconsumed)
        self.cores[client].consume(sid, n)
        flow.unconsumed -= n

    @rule(client=st.booleans(), which=st.integers(0, 15))
    def close(self, client: bool, which: int) -> None:
        sid = self._stream(client, which)
        if sid is not None:
            self.cores[client].close_stream(sid)
            self.flows[(client, sid)].writer_closed = True

    @rule(client=st.booleans(), which=st.integers(0, 15))
    def reset(self, client: bool, which: int) -> None:
        sid = self._stream(client, which)
        if sid is not None:
            self.cores[client].reset_stream(sid)
            self.flows[(True, sid)].reset = True
            self.flows[(False, sid)].reset = True

    @rule(client=st.booleans())
    def ping(self, client: bool) -> None:
        self.cores[client].ping()

    @precondition(lambda self: self.counter > 3)  # let some streams open first
    @rule(client=st.booleans())
    def go_away(self, client: bool) -> None:
        self.cores[client].go_away()

    @rule(to_client=st.booleans(), limit=st.integers(1, 70_000))
    def deliver_some(self, to_client: bool, limit: int) -> None:
        self._deliver(to_client, limit)

    @rule()
    def pump(self) -> None:
        for _ in range(1000):
            self._deliver(True, None)
            self._deliver(False, None)
            if not any(self.in_flight.values()) and not any(c._out for c in self.cores.values()):
                break
        else:
            raise AssertionError("the cores kept talking")
        # Nothing in flight: both sides' view of every window agrees.
        for writer in (True, False):
            reader = self.cores[not writer]
            for sid in set(self.cores[writer].stream_ids()) & set(reader.stream_ids()):
                assert self.cores[writer].send_window(sid) == reader.recv_window(sid)

    @invariant()
    def windows_are_never_negative(self) -> None:
        for core in self.cores.values():
            for sid in core.stream_ids():
                assert core.send_window(sid) >= 0
                assert core.recv_window(sid) >= 0
            assert not core.closed

    def teardown(self) -> None:
        self.pump()
        for flow in self.flows.values():
            if flow.reset:
                assert flow.sent.startswith(flow.received)
            else:
                assert flow.received == flow.sent
                assert flow.reader_ended == flow.writer_closed


TwoCores.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_cores_used_correctly = TwoCores.TestCase
