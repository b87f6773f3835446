"""One linked Spice channel, sans-IO: message framing, housekeeping and client messages.

After the link every message has a header: the 6-byte mini header (type u16, size u32)
when both sides agreed SPICE_COMMON_CAP_MINI_HEADER, else the 18-byte SpiceDataHeader
(serial u64, type u16, size u32, sub_list u32), in which the client numbers its own
messages from 1.  ``SpiceChannelProtocol`` splits the byte stream into messages and
decodes them (``messages.decode``), and answers the housekeeping itself:

* SET_ACK(generation, window) -> ACK_SYNC(generation), then one ACK per ``window``
  messages received (the server stops sending when we fall two windows behind);
* PING(id, timestamp) -> PONG(id, timestamp);
* DISCONNECTING moves the channel to DISCONNECTING (the server is about to close).

Those answers queue up in ``data_to_send()``; the adapter writes them after draining
``next_event()``.  Client messages are built by ``send(type, body)`` and the per-channel
helpers (``attach_channels``, ``key``, ``mouse_*``, ``display_init``), which refuse to run
on the wrong channel type or a closed channel (``SpiceUsageError``).
"""

from __future__ import annotations

import enum
import struct
import time

from cargobay.vmcontrol.spice import constants as c
from cargobay.vmcontrol.spice import messages as m
from cargobay.vmcontrol.spice.constants import ChannelType, MouseButton
from cargobay.vmcontrol.spice.errors import SpiceProtocolError, SpiceUsageError
from cargobay.vmcontrol.spice.keys import KeyStroke, wire_code
from cargobay.vmcontrol.spice.link import NEED_DATA, NeedData

__all__ = ["ChannelState", "SpiceChannelProtocol"]

MINI_HEADER = struct.Struct("<HI")
FULL_HEADER = struct.Struct("<QHII")
MAX_MESSAGE = 64 * 1024 * 1024  # a full-screen uncompressed 4K frame is ~33 MB


class ChannelState(enum.Enum):
    OPEN = "open"
    DISCONNECTING = "disconnecting"  # the server said DISCONNECTING
    CLOSED = "closed"  # we sent DISCONNECTING or saw the stream end


class SpiceChannelProtocol:
    """Messages of one linked channel (created from the link's ``Linked`` event)."""

    def __init__(
        self, channel_type: ChannelType | int, channel_id: int = 0, *, mini_header: bool = True
    ) -> None:
        self.channel_type = int(channel_type)
        self.channel_id = channel_id
        self.mini_header = mini_header
        self.state = ChannelState.OPEN
        self.ack_window = 0  # 0: no SET_ACK yet, nothing to acknowledge
        self.ack_generation = 0
        self.messages_received = 0
        self.acks_sent = 0
        self.pongs_sent = 0
        self.buttons_state = 0
        self._unacked = 0
        self._serial = 0
        self._buf = bytearray()
        self._out = bytearray()

    # -- receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self.state is ChannelState.CLOSED:
            return  # we said DISCONNECTING: what still arrives is dropped
        self._buf += data

    def connection_lost(self) -> None:
        self.state = ChannelState.CLOSED

    def next_event(self) -> object | NeedData:
        """The next decoded server message, or ``NEED_DATA``."""
        header = MINI_HEADER if self.mini_header else FULL_HEADER
        if self.state is ChannelState.CLOSED or len(self._buf) < header.size:
            return NEED_DATA
        if self.mini_header:
            mtype, size = MINI_HEADER.unpack_from(self._buf)
        else:
            _serial, mtype, size, sub_list = FULL_HEADER.unpack_from(self._buf)
            if sub_list and sub_list > size:
                raise SpiceProtocolError(f"message {mtype}: sub_list {sub_list} beyond {size}")
        if size > MAX_MESSAGE:
            raise SpiceProtocolError(
                f"{self._name()}: message {mtype} of {size} bytes (limit {MAX_MESSAGE})"
            )
        if len(self._buf) < header.size + size:
            return NEED_DATA
        body = bytes(self._buf[header.size : header.size + size])
        del self._buf[: header.size + size]
        self.messages_received += 1
        event = m.decode(self.channel_type, mtype, body)
        self._housekeeping(event)
        return event

    def _housekeeping(self, event: object) -> None:
        if isinstance(event, m.SetAck):
            self.ack_generation, self.ack_window = event.generation, event.window
            self._unacked = 0
            self._queue(c.MSGC_ACK_SYNC, struct.pack("<I", event.generation))
            return
        if self.ack_window:
            self._unacked += 1
            if self._unacked >= self.ack_window:
                self._unacked = 0
                self.acks_sent += 1
                self._queue(c.MSGC_ACK, b"")
        if isinstance(event, m.Ping):
            self.pongs_sent += 1
            self._queue(c.MSGC_PONG, struct.pack("<IQ", event.id, event.timestamp))
        elif isinstance(event, m.Disconnecting) and self.state is ChannelState.OPEN:
            self.state = ChannelState.DISCONNECTING

    def data_to_send(self) -> bytes:
        """Housekeeping answers queued by ``next_event`` (ACK_SYNC, ACK, PONG)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- sending ------------------------------------------------------------------------

    def _frame(self, mtype: int, body: bytes) -> bytes:
        if self.mini_header:
            return MINI_HEADER.pack(mtype, len(body)) + body
        self._serial += 1
        return FULL_HEADER.pack(self._serial, mtype, len(body), 0) + body

    def _queue(self, mtype: int, body: bytes) -> None:
        if self.state is not ChannelState.CLOSED:
            self._out += self._frame(mtype, body)

    def send(self, mtype: int, body: bytes = b"") -> bytes:
        """The framed bytes of one client message."""
        if self.state is not ChannelState.OPEN:
            raise SpiceUsageError(f"{self._name()} is {self.state.value}; cannot send")
        if not 0 <= mtype <= 0xFFFF:
            raise SpiceUsageError(f"message type {mtype} is not a u16")
        return self._frame(mtype, body)

    def disconnect(self, reason: int = 0) -> bytes:
        """MSGC_DISCONNECTING; afterwards the channel is CLOSED."""
        if self.state is ChannelState.CLOSED:
            return b""
        out = self._frame(c.MSGC_DISCONNECTING, struct.pack("<QI", time.time_ns(), reason))
        self.state = ChannelState.CLOSED
        return out

    def _name(self) -> str:
        try:
            return f"Spice {ChannelType(self.channel_type).name.lower()} channel"
        except ValueError:
            return f"Spice channel type {self.channel_type}"

    def _need(self, ctype: ChannelType, what: str) -> None:
        if self.channel_type != ctype:
            raise SpiceUsageError(
                f"{what} needs the {ctype.name.lower()} channel, not the {self._name()}"
            )

    # -- main ---------------------------------------------------------------------------

    def attach_channels(self) -> bytes:
        self._need(ChannelType.MAIN, "ATTACH_CHANNELS")
        return self.send(c.MSGC_MAIN_ATTACH_CHANNELS)

    def mouse_mode_request(self, mode: c.MouseMode) -> bytes:
        self._need(ChannelType.MAIN, "MOUSE_MODE_REQUEST")
        return self.send(c.MSGC_MAIN_MOUSE_MODE_REQUEST, struct.pack("<H", mode))

    # -- display ------------------------------------------------------------------------

    def display_init(self) -> bytes:
        self._need(ChannelType.DISPLAY, "DISPLAY_INIT")
        return self.send(c.MSGC_DISPLAY_INIT, m.display_init_body())

    # -- inputs -------------------------------------------------------------------------

    def key(self, key: int, down: bool) -> bytes:
        """KEY_DOWN or KEY_UP of a ``keys`` key (make code, or 0x100|code for E0 keys)."""
        self._need(ChannelType.INPUTS, "a key event")
        mtype = c.MSGC_INPUTS_KEY_DOWN if down else c.MSGC_INPUTS_KEY_UP
        return self.send(mtype, struct.pack("<I", wire_code(key, down)))

    def keys(self, strokes: list[KeyStroke]) -> bytes:
        return b"".join(self.key(k, down) for k, down in strokes)

    def mouse_position(self, x: int, y: int, display_id: int = 0) -> bytes:
        """Absolute position (client mouse mode)."""
        self._need(ChannelType.INPUTS, "MOUSE_POSITION")
        if not (0 <= x <= 0xFFFFFFFF and 0 <= y <= 0xFFFFFFFF and 0 <= display_id <= 0xFF):
            raise SpiceUsageError(f"mouse position ({x}, {y}) on display {display_id} is invalid")
        return self.send(
            c.MSGC_INPUTS_MOUSE_POSITION,
            m.mouse_position_body(x, y, self.buttons_state, display_id),
        )

    def mouse_motion(self, dx: int, dy: int) -> bytes:
        """Relative motion (server mouse mode)."""
        self._need(ChannelType.INPUTS, "MOUSE_MOTION")
        if not (-(2**31) <= dx < 2**31 and -(2**31) <= dy < 2**31):
            raise SpiceUsageError(f"mouse motion ({dx}, {dy}) is out of range")
        return self.send(
            c.MSGC_INPUTS_MOUSE_MOTION, m.mouse_motion_body(dx, dy, self.buttons_state)
        )

    def mouse_button(self, button: MouseButton, down: bool) -> bytes:
        self._need(ChannelType.INPUTS, "a mouse button event")
        button = MouseButton(button)
        mask = c.BUTTON_MASKS[button]
        self.buttons_state = self.buttons_state | mask if down else self.buttons_state & ~mask
        mtype = c.MSGC_INPUTS_MOUSE_PRESS if down else c.MSGC_INPUTS_MOUSE_RELEASE
        return self.send(mtype, m.mouse_button_body(button, self.buttons_state))

    def click(self, button: MouseButton = MouseButton.LEFT) -> bytes:
        return self.mouse_button(button, True) + self.mouse_button(button, False)
