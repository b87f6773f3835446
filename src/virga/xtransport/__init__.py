"""xtransport: the message framing of kylin-x-kernel/xtransfer's ``xtransport`` crate.

Messages travel in frames with a 16-byte little-endian header (magic, version, type,
seq, length, CRC-32 of the payload); a message longer than one frame is split into a
MessageHead and MessageData chunks; with ``wait_for_ack`` every frame is acknowledged.
``frame`` is the wire format, ``protocol`` the sans-IO state machine
(``XTransportConnection``), ``aio`` the adapter over a ``virga.connection.Connection``
(``XTransportChannel``).
"""

from virga.xtransport.aio import ChannelState, XTransportChannel
from virga.xtransport.frame import (
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    FrameHeader,
    FrameType,
    MessageHead,
)
from virga.xtransport.protocol import (
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

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "NEED_DATA",
    "VERSION",
    "AckReceived",
    "ChannelState",
    "ConnectionClosed",
    "Event",
    "FrameHeader",
    "FrameType",
    "MessageHead",
    "MessageReceived",
    "NeedData",
    "RecvState",
    "SendState",
    "XTransportChannel",
    "XTransportConfig",
    "XTransportConnection",
]
