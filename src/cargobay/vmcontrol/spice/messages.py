"""Spice messages after the link: the events the server's messages decode to, and the
encoders of the client messages this client sends.

Decoders take (channel type, message type, body) and return a frozen dataclass; a message
this client does not interpret becomes ``RawMessage`` (type and body kept) rather than an
error, so newer servers keep working.  A body too short for its type is a
``SpiceProtocolError`` (bounds are checked by ``_Reader``, never by catching
``struct.error``).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from cargobay.vmcontrol.spice import constants as c
from cargobay.vmcontrol.spice.constants import ChannelType
from cargobay.vmcontrol.spice.errors import SpiceProtocolError

MAX_LIST = 4096  # more channels/heads than this in one message is garbage


class _Reader:
    def __init__(self, body: bytes, what: str) -> None:
        self.body, self.pos, self.what = body, 0, what

    def take(self, fmt: str) -> tuple[int, ...]:
        s = struct.Struct("<" + fmt)
        if self.pos + s.size > len(self.body):
            raise SpiceProtocolError(
                f"{self.what}: body of {len(self.body)} bytes is too short "
                f"(needs {self.pos + s.size})"
            )
        values = s.unpack_from(self.body, self.pos)
        self.pos += s.size
        return tuple(int(v) for v in values)

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.body):
            raise SpiceProtocolError(f"{self.what}: body too short for {n} more bytes")
        out = self.body[self.pos : self.pos + n]
        self.pos += n
        return out


# -- events every channel can produce ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetAck:
    generation: int
    window: int


@dataclass(frozen=True, slots=True)
class Ping:
    id: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class Notify:
    severity: int
    visibility: int
    what: int
    message: str


@dataclass(frozen=True, slots=True)
class Disconnecting:
    timestamp: int
    reason: int


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message this client does not decode (yet)."""

    channel_type: int
    type: int
    body: bytes


# -- main ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MainInit:
    session_id: int
    display_channels_hint: int
    supported_mouse_modes: int
    current_mouse_mode: int
    agent_connected: bool
    agent_tokens: int
    multi_media_time: int
    ram_hint: int


@dataclass(frozen=True, slots=True)
class ChannelsList:
    channels: tuple[tuple[int, int], ...]  # (type, id)

    def names(self) -> list[str]:
        out = []
        for ctype, cid in self.channels:
            try:
                out.append(f"{ChannelType(ctype).name.lower()}:{cid}")
            except ValueError:
                out.append(f"type{ctype}:{cid}")
        return out


@dataclass(frozen=True, slots=True)
class MouseModeChanged:
    supported_modes: int
    current_mode: int


@dataclass(frozen=True, slots=True)
class MultiMediaTime:
    time: int


@dataclass(frozen=True, slots=True)
class AgentConnected:
    connected: bool
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class VmName:
    name: str


@dataclass(frozen=True, slots=True)
class VmUuid:
    uuid: uuid.UUID


# -- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputsInit:
    keyboard_modifiers: int


@dataclass(frozen=True, slots=True)
class KeyModifiers:
    modifiers: int


@dataclass(frozen=True, slots=True)
class MouseMotionAck:
    pass


# -- display --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisplayMode:
    width: int
    height: int
    bits: int


@dataclass(frozen=True, slots=True)
class DisplayMark:
    pass


@dataclass(frozen=True, slots=True)
class DisplayReset:
    pass


@dataclass(frozen=True, slots=True)
class SurfaceCreate:
    surface_id: int
    width: int
    height: int
    format: int
    flags: int

    @property
    def primary(self) -> bool:
        return bool(self.flags & c.SURFACE_FLAGS_PRIMARY)


@dataclass(frozen=True, slots=True)
class SurfaceDestroy:
    surface_id: int


@dataclass(frozen=True, slots=True)
class MonitorsConfig:
    max_allowed: int
    heads: tuple[tuple[int, int, int, int, int, int], ...]  # id, surface, w, h, x, y


@dataclass(frozen=True, slots=True)
class DisplayDraw:
    """A drawing, copy or stream message: counted, not rendered."""

    type: int
    surface_id: int


# -- cursor ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CursorInit:
    x: int
    y: int
    visible: bool


@dataclass(frozen=True, slots=True)
class CursorMove:
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class CursorEvent:
    """CURSOR_RESET, SET, HIDE, TRAIL, INVAL_ONE or INVAL_ALL, by ``type``."""

    type: int


ChannelEvent = object  # every dataclass above; kept loose so callers match by isinstance


def decode_common(mtype: int, body: bytes) -> object | None:
    """Messages shared by all channels, or None if ``mtype`` is channel specific."""
    r = _Reader(body, f"message {mtype}")
    if mtype == c.MSG_SET_ACK:
        gen, window = r.take("II")
        return SetAck(gen, window)
    if mtype == c.MSG_PING:
        pid, ts = r.take("IQ")
        return Ping(pid, ts)
    if mtype == c.MSG_NOTIFY:
        _ts, severity, visibility, what, mlen = r.take("QIIII")
        text = r.raw(min(mlen, len(body) - r.pos)).split(b"\0", 1)[0]
        return Notify(severity, visibility, what, text.decode("utf-8", "replace"))
    if mtype == c.MSG_DISCONNECTING:
        ts, reason = r.take("QI")
        return Disconnecting(ts, reason)
    return None


def _decode_main(mtype: int, r: _Reader) -> object | None:
    if mtype == c.MSG_MAIN_INIT:
        v = r.take("IIIIIIII")
        return MainInit(v[0], v[1], v[2], v[3], bool(v[4]), v[5], v[6], v[7])
    if mtype == c.MSG_MAIN_CHANNELS_LIST:
        (n,) = r.take("I")
        if n > MAX_LIST:
            raise SpiceProtocolError(f"CHANNELS_LIST of {n} channels")
        return ChannelsList(tuple((t, i) for t, i in (r.take("BB") for _ in range(n))))
    if mtype == c.MSG_MAIN_MOUSE_MODE:
        return MouseModeChanged(*r.take("HH"))
    if mtype == c.MSG_MAIN_MULTI_MEDIA_TIME:
        return MultiMediaTime(*r.take("I"))
    if mtype == c.MSG_MAIN_AGENT_CONNECTED:
        return AgentConnected(True)
    if mtype == c.MSG_MAIN_AGENT_CONNECTED_TOKENS:
        return AgentConnected(True, r.take("I")[0])
    if mtype == c.MSG_MAIN_AGENT_DISCONNECTED:
        return AgentConnected(False)
    if mtype == c.MSG_MAIN_NAME:
        (n,) = r.take("I")
        raw = r.raw(min(n, len(r.body) - r.pos))
        return VmName(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
    if mtype == c.MSG_MAIN_UUID:
        return VmUuid(uuid.UUID(bytes=r.raw(16)))
    return None


def _decode_inputs(mtype: int, r: _Reader) -> object | None:
    if mtype == c.MSG_INPUTS_INIT:
        return InputsInit(*r.take("H"))
    if mtype == c.MSG_INPUTS_KEY_MODIFIERS:
        return KeyModifiers(*r.take("H"))
    if mtype == c.MSG_INPUTS_MOUSE_MOTION_ACK:
        return MouseMotionAck()
    return None


def _decode_display(mtype: int, r: _Reader) -> object | None:
    if mtype == c.MSG_DISPLAY_MODE:
        return DisplayMode(*r.take("III"))
    if mtype == c.MSG_DISPLAY_MARK:
        return DisplayMark()
    if mtype == c.MSG_DISPLAY_RESET:
        return DisplayReset()
    if mtype == c.MSG_DISPLAY_SURFACE_CREATE:
        return SurfaceCreate(*r.take("IIIII"))
    if mtype == c.MSG_DISPLAY_SURFACE_DESTROY:
        return SurfaceDestroy(*r.take("I"))
    if mtype == c.MSG_DISPLAY_MONITORS_CONFIG:
        count, max_allowed = r.take("HH")
        heads = tuple(
            (h[0], h[1], h[2], h[3], h[4], h[5]) for h in (r.take("IIIIIII") for _ in range(count))
        )
        return MonitorsConfig(max_allowed, heads)
    if mtype == c.MSG_DISPLAY_COPY_BITS or 302 <= mtype <= 313 or mtype == 318:
        # Every SpiceMsgDisplayBase starts with the surface id.
        return DisplayDraw(mtype, r.take("I")[0])
    return None


def _decode_cursor(mtype: int, r: _Reader) -> object | None:
    if mtype == c.MSG_CURSOR_INIT:
        x, y, _trail_len, _trail_freq, visible = r.take("hhHHB")
        return CursorInit(x, y, bool(visible))
    if mtype == c.MSG_CURSOR_MOVE:
        return CursorMove(*r.take("hh"))
    if c.MSG_CURSOR_RESET <= mtype <= c.MSG_CURSOR_INVAL_ALL:
        return CursorEvent(mtype)
    return None


_DECODERS = {
    ChannelType.MAIN: _decode_main,
    ChannelType.INPUTS: _decode_inputs,
    ChannelType.DISPLAY: _decode_display,
    ChannelType.CURSOR: _decode_cursor,
}


def decode(channel_type: int, mtype: int, body: bytes) -> object:
    """The event for one server message on a channel of ``channel_type``."""
    common = decode_common(mtype, body)
    if common is not None:
        return common
    decoder = _DECODERS.get(ChannelType(channel_type)) if channel_type in _TYPES else None
    if decoder is not None:
        name = f"{ChannelType(channel_type).name.lower()} message {mtype}"
        event = decoder(mtype, _Reader(body, name))
        if event is not None:
            return event
    return RawMessage(channel_type, mtype, body)


_TYPES = frozenset(int(t) for t in ChannelType)


# -- client messages (bodies only; the channel adds the header) --------------------------


def mouse_position_body(x: int, y: int, buttons_state: int = 0, display_id: int = 0) -> bytes:
    return struct.pack("<IIHB", x, y, buttons_state, display_id)


def mouse_motion_body(dx: int, dy: int, buttons_state: int = 0) -> bytes:
    return struct.pack("<iiH", dx, dy, buttons_state)


def mouse_button_body(button: int, buttons_state: int) -> bytes:
    return struct.pack("<BH", button, buttons_state)


def display_init_body(
    pixmap_cache_id: int = 1,
    pixmap_cache_size: int = 20 * 1024 * 1024,
    glz_dictionary_id: int = 1,
    glz_window_size: int = 16 * 1024 * 1024 // 4,
) -> bytes:
    return struct.pack(
        "<BqBi", pixmap_cache_id, pixmap_cache_size, glz_dictionary_id, glz_window_size
    )
