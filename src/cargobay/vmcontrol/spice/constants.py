"""Numbers of the Spice wire protocol 2.2 (spice-protocol's spice/protocol.h and enums.h).

Only the values the client uses or reports are listed.  Every integer on the wire is
little-endian; structures are packed (no padding).
"""

from __future__ import annotations

from enum import IntEnum

MAGIC = b"REDQ"
VERSION_MAJOR = 2
VERSION_MINOR = 2
TICKET_PUBKEY_BYTES = 162  # a 1024-bit RSA key as DER SubjectPublicKeyInfo
TICKET_ENCRYPTED_BYTES = 128  # one RSA-1024 block
MAX_PASSWORD_LENGTH = 60  # the server's SPICE_MAX_PASSWORD_LENGTH


class ChannelType(IntEnum):
    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11

    @classmethod
    def parse(cls, value: str | int) -> ChannelType:
        """A channel type by number or by (case-insensitive) name, e.g. ``"inputs"``."""
        if isinstance(value, int):
            return cls(value)
        name = value.strip().upper().replace("-", "").replace("_", "")
        try:
            return cls[name]
        except KeyError:
            known = ", ".join(m.name.lower() for m in cls)
            raise ValueError(f"unknown Spice channel type {value!r} (known: {known})") from None


class LinkErr(IntEnum):
    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


class CommonCap(IntEnum):
    PROTOCOL_AUTH_SELECTION = 0
    AUTH_SPICE = 1
    AUTH_SASL = 2
    MINI_HEADER = 3


class MainCap(IntEnum):
    SEMI_SEAMLESS_MIGRATE = 0
    NAME_AND_UUID = 1
    AGENT_CONNECTED_TOKENS = 2
    SEAMLESS_MIGRATE = 3


class InputsCap(IntEnum):
    KEY_SCANCODE = 0


class MouseMode(IntEnum):
    SERVER = 1
    CLIENT = 2


class MouseButton(IntEnum):
    LEFT = 1
    MIDDLE = 2
    RIGHT = 3
    UP = 4
    DOWN = 5


# Bits of buttons_state: LEFT=1<<0, MIDDLE=1<<1, RIGHT=1<<2, UP=1<<3, DOWN=1<<4.
BUTTON_MASKS = {b: 1 << (b - 1) for b in MouseButton}

# Messages every channel shares (server -> client).
MSG_MIGRATE = 1
MSG_MIGRATE_DATA = 2
MSG_SET_ACK = 3
MSG_PING = 4
MSG_WAIT_FOR_CHANNELS = 5
MSG_DISCONNECTING = 6
MSG_NOTIFY = 7
MSG_LIST = 8

# Messages every channel shares (client -> server).
MSGC_ACK_SYNC = 1
MSGC_ACK = 2
MSGC_PONG = 3
MSGC_DISCONNECTING = 6

# Main channel.
MSG_MAIN_MIGRATE_BEGIN = 101
MSG_MAIN_MIGRATE_CANCEL = 102
MSG_MAIN_INIT = 103
MSG_MAIN_CHANNELS_LIST = 104
MSG_MAIN_MOUSE_MODE = 105
MSG_MAIN_MULTI_MEDIA_TIME = 106
MSG_MAIN_AGENT_CONNECTED = 107
MSG_MAIN_AGENT_DISCONNECTED = 108
MSG_MAIN_AGENT_DATA = 109
MSG_MAIN_AGENT_TOKEN = 110
MSG_MAIN_NAME = 113
MSG_MAIN_UUID = 114
MSG_MAIN_AGENT_CONNECTED_TOKENS = 115
MSGC_MAIN_CLIENT_INFO = 101
MSGC_MAIN_ATTACH_CHANNELS = 104
MSGC_MAIN_MOUSE_MODE_REQUEST = 105

# Inputs channel.
MSG_INPUTS_INIT = 101
MSG_INPUTS_KEY_MODIFIERS = 102
MSG_INPUTS_MOUSE_MOTION_ACK = 111
MSGC_INPUTS_KEY_DOWN = 101
MSGC_INPUTS_KEY_UP = 102
MSGC_INPUTS_KEY_MODIFIERS = 103
MSGC_INPUTS_MOUSE_MOTION = 111
MSGC_INPUTS_MOUSE_POSITION = 112
MSGC_INPUTS_MOUSE_PRESS = 113
MSGC_INPUTS_MOUSE_RELEASE = 114
MOUSE_MOTION_ACK_BUNCH = 4  # the server acks every 4 motion messages

# Display channel.
MSG_DISPLAY_MODE = 101
MSG_DISPLAY_MARK = 102
MSG_DISPLAY_RESET = 103
MSG_DISPLAY_COPY_BITS = 104
MSG_DISPLAY_INVAL_ALL_PIXMAPS = 106
MSG_DISPLAY_INVAL_ALL_PALETTES = 108
MSG_DISPLAY_STREAM_CREATE = 122
MSG_DISPLAY_STREAM_DESTROY = 125
MSG_DISPLAY_DRAW_FILL = 302
MSG_DISPLAY_DRAW_COPY = 304
MSG_DISPLAY_SURFACE_CREATE = 314
MSG_DISPLAY_SURFACE_DESTROY = 315
MSG_DISPLAY_MONITORS_CONFIG = 317
MSGC_DISPLAY_INIT = 101
SURFACE_FLAGS_PRIMARY = 1

# Cursor channel.
MSG_CURSOR_INIT = 101
MSG_CURSOR_RESET = 102
MSG_CURSOR_SET = 103
MSG_CURSOR_MOVE = 104
MSG_CURSOR_HIDE = 105
MSG_CURSOR_TRAIL = 106
MSG_CURSOR_INVAL_ONE = 107
MSG_CURSOR_INVAL_ALL = 108
