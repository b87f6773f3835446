"""The protocol layer's one interface, ``Transport``, and its yamux implementation.

A transport runs on an established ``Connection`` and carries whole messages
(``send``/``recv``); yamux also carries multiplexed byte streams.  The application layer
(``VirgaClient``/``VirgaServer``) talks only to this interface, so yamux and xtransport
are interchangeable below it.

Messages over yamux travel on the session's *message stream*: the first stream the
client opens right after the session starts (id 1).  Each message is a 4-byte
big-endian length followed by the payload.  Every other stream belongs to the
application (``open_stream``/``accept_stream``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

from virga.connection.base import Connection
from virga.errors import (
    ConfigError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionClosedError,
    StreamClosedError,
)
from virga.xtransport import XTransportChannel, XTransportConfig
from virga.yamux import Session, Stream, YamuxConfig

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "Transport",
    "TransportFactory",
    "XTransportHandler",
    "YamuxTransport",
    "transport_factory",
]

DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024
_LEN: Final = struct.Struct(">I")


@runtime_checkable
class Transport(Protocol):
    """What the application layer needs from a transport protocol (the seed's ``Transport``)."""

    @property
    def protocol(self) -> str:
        """``"yamux"`` or ``"xtransport"``."""
        ...

    @property
    def description(self) -> str: ...

    def is_active(self) -> bool: ...

    async def start(self) -> None:
        """Run the protocol's opening on the connection (both sides call it)."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one whole message."""
        ...

    async def recv(self) -> bytes:
        """Receive one whole message; ``SessionClosedError`` when the peer is gone."""
        ...

    async def ping(self) -> float:
        """A health probe: round-trip seconds."""
        ...

    async def open_stream(self) -> Stream:
        """A new multiplexed stream (``LocalProtocolError`` if the protocol has none)."""
        ...

    async def accept_stream(self) -> Stream: ...

    async def close(self) -> None: ...


class YamuxTransport:
    """Messages and streams over one yamux session."""

    protocol = "yamux"

    def __init__(
        self,
        conn: Connection,
        *,
        client: bool,
        config: YamuxConfig | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self._conn = conn
        self._client = client
        self._config = config or YamuxConfig()
        self._max_message = max_message
        self._session: Session | None = None
        self._messages: Stream | None = None
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()

    @property
    def description(self) -> str:
        return f"yamux over {self._conn.description}"

    @property
    def session(self) -> Session:
        if self._session is None:
            raise LocalProtocolError("the yamux transport is not started; call start() first")
        return self._session

    def is_active(self) -> bool:
        return self._session is not None and not self._session.closed

    async def start(self) -> None:
        if self._session is not None:
            return
        if self._client:
            self._session = Session.client(self._conn, self._config)
            self._messages = await self._session.open_stream()
        else:
            self._session = Session.server(self._conn, self._config)
            self._messages = await self._session.accept_stream()

    def _message_stream(self) -> Stream:
        if self._messages is None:
            raise LocalProtocolError("the yamux transport is not started; call start() first")
        return self._messages

    async def send(self, data: bytes) -> None:
        if len(data) > self._max_message:
            raise LocalProtocolError(
                f"message of {len(data)} bytes is over the limit of {self._max_message}"
            )
        stream = self._message_stream()
        header = _LEN.pack(len(data))
        async with self._send_lock:
            if len(data) < 65536:  # one write, one frame for small messages
                await stream.write(header + data)
            else:
                await stream.write(header)
                await stream.write(data)

    async def recv(self) -> bytes:
        stream = self._message_stream()
        async with self._recv_lock:
            try:
                (size,) = _LEN.unpack(await stream.read_exact(4))
            except StreamClosedError as err:
                raise SessionClosedError(
                    f"{self.description}: the peer closed the message stream"
                ) from err
            if size > self._max_message:
                raise RemoteProtocolError(
                    f"{self.description}: peer sent a message of {size} bytes, "
                    f"over the limit of {self._max_message}"
                )
            return await stream.read_exact(size) if size else b""

    async def ping(self) -> float:
        return await self.session.ping()

    async def open_stream(self) -> Stream:
        return await self.session.open_stream()

    async def accept_stream(self) -> Stream:
        return await self.session.accept_stream()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        else:
            await self._conn.close()


class XTransportHandler:
    """Messages over xtransport framing (the seed's ``XTransportHandler``); no streams, no ping."""

    protocol = "xtransport"

    def __init__(
        self,
        conn: Connection,
        *,
        config: XTransportConfig | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        cfg = config or XTransportConfig()
        if cfg.max_message_size > max_message:
            cfg = dataclasses.replace(cfg, max_message_size=max_message)
        self._channel = XTransportChannel(conn, cfg)

    @property
    def description(self) -> str:
        return f"xtransport over {self._channel.description}"

    def is_active(self) -> bool:
        return self._channel.is_open()

    async def start(self) -> None:
        """xtransport has no opening handshake; start reading at once, so that a peer
        that goes away is noticed (``is_active``) before the first ``send``/``recv``."""
        self._channel.start()

    async def send(self, data: bytes) -> None:
        await self._channel.send(data)

    async def recv(self) -> bytes:
        return await self._channel.recv()

    async def ping(self) -> float:
        raise LocalProtocolError("xtransport has no ping frame; check is_active() instead")

    async def open_stream(self) -> Stream:
        raise LocalProtocolError("xtransport carries messages only; use yamux for streams")

    async def accept_stream(self) -> Stream:
        raise LocalProtocolError("xtransport carries messages only; use yamux for streams")

    async def close(self) -> None:
        await self._channel.close()


TransportFactory = Callable[[Connection, bool], Transport]
"""Builds the transport for a new connection; the bool says whether this side dialled."""


def transport_factory(
    protocol: str, *, yamux: YamuxConfig, xtransport: XTransportConfig, max_message: int
) -> TransportFactory:
    """The factory ``VirgaClient``/``VirgaServer`` use for ``protocol``."""
    if protocol == "yamux":
        return lambda conn, client: YamuxTransport(
            conn, client=client, config=yamux, max_message=max_message
        )
    if protocol == "xtransport":
        return lambda conn, client: XTransportHandler(
            conn, config=xtransport, max_message=max_message
        )
    raise ConfigError(f"unknown protocol {protocol!r}: use yamux or xtransport")
