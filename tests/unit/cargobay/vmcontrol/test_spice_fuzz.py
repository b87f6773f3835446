"""Fuzzing the Spice decoders: arbitrary bytes give events or typed Spice errors, nothing else."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from cargobay.vmcontrol.spice import messages as m
from cargobay.vmcontrol.spice.channel import SpiceChannelProtocol
from cargobay.vmcontrol.spice.constants import ChannelType
from cargobay.vmcontrol.spice.errors import SpiceError
from cargobay.vmcontrol.spice.link import NEED_DATA, LinkReplyReceived, SpiceLink, parse_link_reply

channel_types = st.sampled_from([*ChannelType, 0, 12, 255])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_link_reply_only_raises_spice_errors(body: bytes) -> None:
    with contextlib.suppress(SpiceError):
        parse_link_reply(body)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        # A well-formed header with a garbage reply behind it gets past the magic check.
        st.binary(min_size=4, max_size=300).map(
            lambda b: b"REDQ" + struct.pack("<III", 2, 2, len(b)) + b
        ),
    ),
    st.integers(min_value=1, max_value=50),
)
def test_link_state_machine_only_raises_spice_errors(data: bytes, chunk: int) -> None:
    link = SpiceLink(ChannelType.MAIN, password="pw")
    link.start()
    try:
        for i in range(0, len(data), chunk):
            link.receive_data(data[i : i + chunk])
            event = link.next_event()
            if isinstance(event, LinkReplyReceived):
                link.send_ticket()
    except SpiceError:
        pass


@settings(max_examples=300, deadline=None)
@given(channel_types, st.integers(min_value=0, max_value=0xFFFF), st.binary(max_size=200))
def test_decode_only_raises_spice_errors(ctype: int, mtype: int, body: bytes) -> None:
    try:
        event = m.decode(ctype, mtype, body)
    except SpiceError:
        return
    assert event is not None


@settings(max_examples=200, deadline=None)
@given(
    channel_types,
    st.booleans(),
    st.lists(
        st.tuples(
            st.sampled_from([3, 4, 6, 7, 101, 102, 103, 104, 113, 314, 317]), st.binary(max_size=64)
        ),
        max_size=8,
    ),
)
def test_channel_stream_only_raises_spice_errors(
    ctype: int, mini_header: bool, msgs: list[tuple[int, bytes]]
) -> None:
    proto = SpiceChannelProtocol(ctype, mini_header=mini_header)
    if mini_header:
        data = b"".join(struct.pack("<HI", t, len(b)) + b for t, b in msgs)
    else:
        data = b"".join(struct.pack("<QHII", 1, t, len(b), 0) + b for t, b in msgs)
    try:
        proto.receive_data(data)
        while proto.next_event() is not NEED_DATA:
            proto.data_to_send()
    except SpiceError:
        pass
