"""Spice channel framing, housekeeping and decoders, fed hand-built messages."""

from __future__ import annotations

import struct
import uuid

import pytest

from cargobay.vmcontrol.spice import messages as m
from cargobay.vmcontrol.spice.channel import ChannelState, SpiceChannelProtocol
from cargobay.vmcontrol.spice.constants import ChannelType, MouseButton
from cargobay.vmcontrol.spice.errors import SpiceProtocolError, SpiceUsageError
from cargobay.vmcontrol.spice.link import NEED_DATA


def mini(mtype: int, body: bytes = b"") -> bytes:
    return struct.pack("<HI", mtype, len(body)) + body


def full(serial: int, mtype: int, body: bytes = b"") -> bytes:
    return struct.pack("<QHII", serial, mtype, len(body), 0) + body


def feed(proto: SpiceChannelProtocol, data: bytes, chunk: int = 0) -> list[object]:
    events: list[object] = []
    pieces = [data] if not chunk else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        proto.receive_data(piece)
        while (event := proto.next_event()) is not NEED_DATA:
            events.append(event)
    return events


MAIN_INIT = struct.pack("<IIIIIIII", 0xDEADBEEF, 1, 3, 2, 1, 10, 12345, 50 << 20)


def test_main_init_and_channels_list_byte_by_byte() -> None:
    proto = SpiceChannelProtocol(ChannelType.MAIN)
    data = mini(103, MAIN_INIT) + mini(104, struct.pack("<I", 3) + bytes([2, 0, 4, 0, 3, 0]))
    events = feed(proto, data, chunk=1)
    assert events == [
        m.MainInit(0xDEADBEEF, 1, 3, 2, True, 10, 12345, 50 << 20),
        m.ChannelsList(((2, 0), (4, 0), (3, 0))),
    ]
    assert events[1].names() == ["display:0", "cursor:0", "inputs:0"]  # type: ignore[attr-defined]
    assert proto.messages_received == 2
    assert proto.data_to_send() == b""


def test_attach_channels_framing_mini_and_full() -> None:
    assert SpiceChannelProtocol(ChannelType.MAIN).attach_channels() == b"\x68\x00\0\0\0\0"
    proto = SpiceChannelProtocol(ChannelType.MAIN, mini_header=False)
    assert proto.attach_channels() == full(1, 104)
    assert proto.attach_channels() == full(2, 104)


def test_full_header_messages_are_decoded() -> None:
    proto = SpiceChannelProtocol(ChannelType.MAIN, mini_header=False)
    events = feed(proto, full(1, 103, MAIN_INIT) + full(2, 4, struct.pack("<IQ", 9, 77)), 5)
    assert isinstance(events[0], m.MainInit)
    assert events[1] == m.Ping(9, 77)
    # PONG carries the client's own serial.
    assert proto.data_to_send() == full(1, 3, struct.pack("<IQ", 9, 77))


def test_ping_is_answered_with_pong() -> None:
    proto = SpiceChannelProtocol(ChannelType.INPUTS)
    body = struct.pack("<IQ", 42, 0x0102030405060708) + b"padding-data"
    assert feed(proto, mini(4, body)) == [m.Ping(42, 0x0102030405060708)]
    assert proto.data_to_send() == mini(3, struct.pack("<IQ", 42, 0x0102030405060708))
    assert proto.data_to_send() == b""
    assert proto.pongs_sent == 1


def test_set_ack_then_ack_every_window() -> None:
    proto = SpiceChannelProtocol(ChannelType.DISPLAY)
    feed(proto, mini(3, struct.pack("<II", 7, 3)))
    assert proto.data_to_send() == mini(1, struct.pack("<I", 7))  # ACK_SYNC(generation)
    feed(proto, mini(102) * 2)
    assert proto.data_to_send() == b""
    feed(proto, mini(102))
    assert proto.data_to_send() == mini(2)  # ACK after 3 messages
    feed(proto, mini(102) * 6)
    assert proto.data_to_send() == mini(2) * 2
    assert proto.acks_sent == 3
    # A new SET_ACK restarts the count with the new window.
    feed(proto, mini(102) + mini(3, struct.pack("<II", 8, 2)) + mini(102))
    assert proto.data_to_send() == mini(1, struct.pack("<I", 8))


def test_no_acks_before_set_ack() -> None:
    proto = SpiceChannelProtocol(ChannelType.DISPLAY)
    feed(proto, mini(102) * 50)
    assert proto.data_to_send() == b""


def test_notify_and_disconnecting() -> None:
    proto = SpiceChannelProtocol(ChannelType.MAIN)
    text = b"keyboard grabbed\0"
    notify = struct.pack("<QIIII", 1, 2, 3, 4, len(text)) + text
    events = feed(proto, mini(7, notify) + mini(6, struct.pack("<QI", 5, 8)))
    assert events == [m.Notify(2, 3, 4, "keyboard grabbed"), m.Disconnecting(5, 8)]
    assert proto.state is ChannelState.DISCONNECTING
    with pytest.raises(SpiceUsageError, match="disconnecting"):
        proto.attach_channels()


def test_disconnect_closes() -> None:
    proto = SpiceChannelProtocol(ChannelType.MAIN)
    out = proto.disconnect(0)
    assert out[:2] == b"\x06\x00"
    assert struct.unpack_from("<I", out, 2)[0] == 12
    assert proto.state is ChannelState.CLOSED
    assert proto.disconnect() == b""
    with pytest.raises(SpiceUsageError):
        proto.attach_channels()


def test_wrong_channel_for_the_message() -> None:
    with pytest.raises(SpiceUsageError, match="main channel"):
        SpiceChannelProtocol(ChannelType.INPUTS).attach_channels()
    with pytest.raises(SpiceUsageError, match="inputs channel"):
        SpiceChannelProtocol(ChannelType.MAIN).key(0x1E, True)


def test_key_messages() -> None:
    proto = SpiceChannelProtocol(ChannelType.INPUTS)
    assert proto.key(0x1E, True) == mini(101, b"\x1e\0\0\0")  # 'a' down
    assert proto.key(0x1E, False) == mini(102, b"\x9e\0\0\0")  # 'a' up
    assert proto.key(0x153, True) == mini(101, b"\xe0\x53\0\0")  # Delete: E0 53
    assert proto.key(0x153, False) == mini(102, b"\xe0\xd3\0\0")  # E0 D3


def test_mouse_messages() -> None:
    proto = SpiceChannelProtocol(ChannelType.INPUTS)
    assert proto.mouse_position(640, 480) == mini(112, struct.pack("<IIHB", 640, 480, 0, 0))
    assert proto.mouse_motion(-5, 7) == mini(111, struct.pack("<iiH", -5, 7, 0))
    assert proto.mouse_button(MouseButton.LEFT, True) == mini(113, b"\x01\x01\x00")
    assert proto.mouse_button(MouseButton.RIGHT, True) == mini(113, b"\x03\x05\x00")
    # The state follows held buttons into motion messages.
    assert proto.mouse_motion(1, 0) == mini(111, struct.pack("<iiH", 1, 0, 5))
    assert proto.mouse_button(MouseButton.LEFT, False) == mini(114, b"\x01\x04\x00")
    assert proto.click(MouseButton.MIDDLE) == mini(113, b"\x02\x06\x00") + mini(
        114, b"\x02\x04\x00"
    )
    with pytest.raises(SpiceUsageError):
        proto.mouse_position(-1, 0)


def test_inputs_events() -> None:
    proto = SpiceChannelProtocol(ChannelType.INPUTS)
    events = feed(proto, mini(101, b"\x02\x00") + mini(102, b"\x04\x00") + mini(111))
    assert events == [m.InputsInit(2), m.KeyModifiers(4), m.MouseMotionAck()]


def test_display_events() -> None:
    proto = SpiceChannelProtocol(ChannelType.DISPLAY)
    head = struct.pack("<IIIIIII", 0, 0, 1024, 768, 0, 0, 0)
    data = (
        mini(101, struct.pack("<III", 800, 600, 32))
        + mini(314, struct.pack("<IIIII", 0, 640, 480, 32, 1))
        + mini(304, struct.pack("<I", 0) + b"rest of a draw copy")
        + mini(317, struct.pack("<HH", 1, 4) + head)
        + mini(315, struct.pack("<I", 0))
        + mini(102)
        + mini(103)
        + mini(999, b"future")
    )
    events = feed(proto, data, chunk=3)
    assert events == [
        m.DisplayMode(800, 600, 32),
        m.SurfaceCreate(0, 640, 480, 32, 1),
        m.DisplayDraw(304, 0),
        m.MonitorsConfig(4, ((0, 0, 1024, 768, 0, 0),)),
        m.SurfaceDestroy(0),
        m.DisplayMark(),
        m.DisplayReset(),
        m.RawMessage(ChannelType.DISPLAY, 999, b"future"),
    ]
    assert events[1].primary  # type: ignore[attr-defined]


def test_cursor_and_main_extras() -> None:
    cursor = SpiceChannelProtocol(ChannelType.CURSOR)
    init = struct.pack("<hhHHB", -3, 4, 0, 0, 1) + b"cursor-shape"
    events = feed(cursor, mini(101, init) + mini(104, struct.pack("<hh", 10, 20)) + mini(105))
    assert events == [m.CursorInit(-3, 4, True), m.CursorMove(10, 20), m.CursorEvent(105)]
    main = SpiceChannelProtocol(ChannelType.MAIN)
    vm_uuid = uuid.uuid4()
    events = feed(
        main,
        mini(113, struct.pack("<I", 4) + b"vm1\0")
        + mini(114, vm_uuid.bytes)
        + mini(105, struct.pack("<HH", 3, 2))
        + mini(115, struct.pack("<I", 10))
        + mini(108),
    )
    assert events == [
        m.VmName("vm1"),
        m.VmUuid(vm_uuid),
        m.MouseModeChanged(3, 2),
        m.AgentConnected(True, 10),
        m.AgentConnected(False),
    ]


def test_short_body_and_huge_size_are_protocol_errors() -> None:
    proto = SpiceChannelProtocol(ChannelType.MAIN)
    with pytest.raises(SpiceProtocolError, match="too short"):
        feed(proto, mini(103, b"\0" * 10))
    proto = SpiceChannelProtocol(ChannelType.MAIN)
    proto.receive_data(struct.pack("<HI", 103, 1 << 31))
    with pytest.raises(SpiceProtocolError, match="limit"):
        proto.next_event()
