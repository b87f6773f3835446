"""The application layer, server side: ``VirgaServer`` and ``ServerConfig`` (seed 001, 3.4.2).

    server = VirgaServer.with_yamux(ServerConfig(listen_port=1024))
    await server.listen()
    while True:
        data = await server.recv()      # from any client
        await server.send(data)         # to the client the last message came from

Each accepted connection becomes a ``ServerConnection`` with its own ``send``/``recv``;
the server also fans every connection's messages (and, for yamux, its streams) into
one queue each, which ``recv``/``accept_stream`` read.  Connections beyond
``max_connections`` are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from virga.address import VMADDR_CID_ANY, parse_address
from virga.client import DEFAULT_PORT
from virga.connection import listen
from virga.connection.base import Connection, Listener
from virga.errors import (
    ClosedError,
    ConfigError,
    LocalProtocolError,
    MiddlewareError,
    SessionClosedError,
    VirgaError,
)
from virga.middleware import Middleware, MiddlewareChain
from virga.transport import (
    DEFAULT_MAX_MESSAGE,
    Transport,
    TransportFactory,
    YamuxTransport,
    transport_factory,
)
from virga.xtransport import XTransportConfig
from virga.yamux import Stream, YamuxConfig

__all__ = ["ServerConfig", "ServerConnection", "VirgaServer"]

log = logging.getLogger("virga.server")

MESSAGE_BACKLOG = 64
"""Messages received from all clients and not yet returned by ``recv``."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen_cid: int = VMADDR_CID_ANY
    listen_port: int = DEFAULT_PORT
    max_connections: int = 64
    address: str | None = None
    """Any virga address to listen on; overrides ``listen_cid``/``listen_port``."""
    handshake_timeout_ms: int = 5000
    yamux: YamuxConfig = field(default_factory=YamuxConfig)
    xtransport: XTransportConfig = field(default_factory=XTransportConfig)
    max_message: int = DEFAULT_MAX_MESSAGE
    middleware: Sequence[Middleware] = ()

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError(f"max_connections={self.max_connections} must be at least 1")
        if self.handshake_timeout_ms <= 0:
            raise ConfigError(f"handshake_timeout_ms={self.handshake_timeout_ms} must be positive")
        if self.max_message <= 0:
            raise ConfigError(f"max_message={self.max_message} must be positive")
        if self.address is not None:
            parse_address(self.address)

    @classmethod
    def default(cls) -> ServerConfig:
        return cls()

    @property
    def target(self) -> str:
        return self.address or f"vsock:{self.listen_cid}:{self.listen_port}"


class ServerConnection:
    """One client of the server."""

    def __init__(self, transport: Transport, chain: MiddlewareChain, number: int) -> None:
        self.transport = transport
        self._chain = chain
        self.number = number

    def __repr__(self) -> str:
        return f"<ServerConnection #{self.number} {self.transport.description}>"

    def is_active(self) -> bool:
        return self.transport.is_active()

    async def send(self, data: bytes) -> None:
        await self.transport.send(await self._chain.outbound(bytes(data)))

    async def recv(self) -> bytes:
        return await self._chain.inbound(await self.transport.recv())

    async def open_stream(self) -> Stream:
        return await self.transport.open_stream()

    async def close(self) -> None:
        await self.transport.close()


class VirgaServer:
    """Listens for virga clients and serves their messages and streams."""

    def __init__(self, config: ServerConfig, factory: TransportFactory, protocol: str) -> None:
        self.config = config
        self._factory = factory
        self.protocol = protocol
        self._chain = MiddlewareChain(config.middleware)
        self._listener: Listener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: list[ServerConnection] = []
        # Bounded: a server that does not call recv() stops reading its clients, and the
        # transports' flow control pushes back on them.
        self._messages: asyncio.Queue[tuple[ServerConnection, bytes]] = asyncio.Queue(
            MESSAGE_BACKLOG
        )
        self._streams: asyncio.Queue[tuple[ServerConnection, Stream]] = asyncio.Queue()
        self._connected: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self._last: ServerConnection | None = None
        self._count = 0
        self._handshaking = 0  # accepted, admitted, not yet in ``connections``
        self._closed = False
        self.rejected = 0

    @classmethod
    def with_yamux(cls, config: ServerConfig | None = None) -> VirgaServer:
        return cls._with("yamux", config or ServerConfig())

    @classmethod
    def with_xtransport(cls, config: ServerConfig | None = None) -> VirgaServer:
        return cls._with("xtransport", config or ServerConfig())

    @classmethod
    def _with(cls, protocol: str, cfg: ServerConfig) -> VirgaServer:
        factory = transport_factory(
            protocol, yamux=cfg.yamux, xtransport=cfg.xtransport, max_message=cfg.max_message
        )
        return cls(cfg, factory, protocol)

    def __repr__(self) -> str:
        return f"<VirgaServer {self.protocol} {self.config.target} clients={len(self.connections)}>"

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self) -> None:
        if self._listener is not None:
            return
        self._listener = await listen(self.config.target)
        self._spawn(self._accept_loop(), f"virga-accept {self.config.target}")

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed:
            try:
                conn = await self._listener.accept()
            except ClosedError:
                return
            # Count handshakes in flight too, or a rush of clients all gets in.
            if len(self.connections) + self._handshaking >= self.config.max_connections:
                self.rejected += 1
                log.warning(
                    "virga: %s refused: max_connections=%d reached",
                    conn.description,
                    self.config.max_connections,
                )
                await conn.close()
                continue
            self._handshaking += 1
            self._spawn(self._serve(conn), f"virga-conn {conn.description}")

    async def _serve(self, conn: Connection) -> None:
        transport = self._factory(conn, False)
        try:
            async with asyncio.timeout(self.config.handshake_timeout_ms / 1000):
                await transport.start()
        except (TimeoutError, VirgaError) as err:
            log.warning("virga: handshake with %s failed: %s", conn.description, err)
            await transport.close()
            return
        finally:
            self._handshaking -= 1
        self._count += 1
        client = ServerConnection(transport, self._chain, self._count)
        self.connections.append(client)
        self._connected.put_nowait(client)
        if isinstance(transport, YamuxTransport):
            self._spawn(self._pump_streams(client), f"virga-streams #{client.number}")
        try:
            while True:
                data = await client.recv()
                await self._messages.put((client, data))
        except MiddlewareError as err:
            # A peer whose messages fail the middleware (wrong key, other chain) is dropped.
            log.warning("virga: dropping client #%d: %s", client.number, err)
        except VirgaError as err:
            log.debug("virga: client #%d gone: %s", client.number, err)
        finally:
            with contextlib.suppress(ValueError):
                self.connections.remove(client)
            await transport.close()

    async def _pump_streams(self, client: ServerConnection) -> None:
        with contextlib.suppress(VirgaError):
            while True:
                stream = await client.transport.accept_stream()
                self._streams.put_nowait((client, stream))

    async def accept(self) -> ServerConnection:
        """The next client that connected (every client is also served by ``recv``)."""
        self._check_listening()
        return await self._connected.get()

    def _check_listening(self) -> None:
        if self._listener is None or self._closed:
            raise LocalProtocolError("the server is not listening; call listen() first")

    async def recv_from(self) -> tuple[ServerConnection, bytes]:
        self._check_listening()
        client, data = await self._messages.get()
        self._last = client
        return client, data

    async def recv(self) -> bytes:
        """The next message from any client."""
        return (await self.recv_from())[1]

    async def send(self, data: bytes, to: ServerConnection | None = None) -> None:
        """Send to ``to``, or to the client whose message ``recv`` returned last."""
        target = to or self._last
        if target is None:
            raise LocalProtocolError("send() without a target before any message was received")
        if not target.is_active():
            raise SessionClosedError(f"client #{target.number} is disconnected")
        await target.send(data)

    async def accept_stream(self) -> tuple[ServerConnection, Stream]:
        """The next stream any client opened (yamux only)."""
        self._check_listening()
        if self.protocol != "yamux":
            raise LocalProtocolError(f"{self.protocol} has no streams")
        return await self._streams.get()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            await self._listener.close()
        for client in list(self.connections):
            await client.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def __aenter__(self) -> Self:
        await self.listen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
