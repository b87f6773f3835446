"""yamux (hashicorp's spec): stream multiplexing over one byte stream.

``frame`` is the wire format, ``session`` the sans-IO state machine (``YamuxCore``),
``aio`` the asyncio ``Session``/``Stream`` over a ``virga.connection.Connection``.
"""

from virga.yamux.aio import Session, Stream
from virga.yamux.config import INITIAL_STREAM_WINDOW, YamuxConfig
from virga.yamux.frame import Flag, FrameHeader, FrameType, GoAwayCode
from virga.yamux.session import Role, SessionState, StreamState, YamuxCore

__all__ = [
    "INITIAL_STREAM_WINDOW",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "Role",
    "Session",
    "SessionState",
    "Stream",
    "StreamState",
    "YamuxConfig",
    "YamuxCore",
]
