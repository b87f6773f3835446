"""The application layer, client side: ``VirgaClient`` and ``ClientConfig`` (seed 001, 3.4.1).

    client = VirgaClient.with_yamux(ClientConfig(server_cid=3, server_port=1024))
    await client.connect()
    await client.send(b"hello")
    reply = await client.recv()
    await client.disconnect()

Messages pass through the configured middleware (compression, encryption, rate limiting)
on the way out and back in reverse order.  With a ``ReconnectPolicy`` a lost connection
is re-established, with backoff, by the next call; the call that saw the loss raises
(nothing is resent behind the caller's back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from virga.address import VMADDR_CID_HOST, parse_address
from virga.connection import connect
from virga.errors import (
    ClosedError,
    ConfigError,
    ConnectError,
    LocalProtocolError,
    VirgaTimeoutError,
)
from virga.middleware import Middleware, MiddlewareChain
from virga.reconnect import ReconnectPolicy
from virga.transport import DEFAULT_MAX_MESSAGE, Transport, TransportFactory, transport_factory
from virga.xtransport import XTransportConfig
from virga.yamux import Stream, YamuxConfig

__all__ = ["ClientConfig", "VirgaClient"]

log = logging.getLogger("virga.client")

DEFAULT_PORT = 1024


@dataclass(frozen=True, slots=True)
class ClientConfig:
    server_cid: int = VMADDR_CID_HOST
    """Remote CID (for vsock); ignored when ``address`` is set."""
    server_port: int = DEFAULT_PORT
    connect_timeout_ms: int = 5000
    address: str | None = None
    """Any virga address (``hvsock:/run/fc.sock:1024``, ``unix:/run/x.sock``, ...);
    overrides ``server_cid``/``server_port``."""
    yamux: YamuxConfig = field(default_factory=YamuxConfig)
    xtransport: XTransportConfig = field(default_factory=XTransportConfig)
    max_message: int = DEFAULT_MAX_MESSAGE
    middleware: Sequence[Middleware] = ()
    reconnect: ReconnectPolicy | None = None

    def __post_init__(self) -> None:
        if self.connect_timeout_ms <= 0:
            raise ConfigError(f"connect_timeout_ms={self.connect_timeout_ms} must be positive")
        if not 0 <= self.server_port <= 0xFFFFFFFF:
            raise ConfigError(f"server_port={self.server_port} is out of range")
        if self.max_message <= 0:
            raise ConfigError(f"max_message={self.max_message} must be positive")
        if self.address is not None:
            parse_address(self.address)  # fail now, with the address named

    @classmethod
    def default(cls) -> ClientConfig:
        return cls()

    @property
    def target(self) -> str:
        return self.address or f"vsock:{self.server_cid}:{self.server_port}"


class VirgaClient:
    """Connects to a ``VirgaServer`` and exchanges messages and streams with it."""

    def __init__(self, config: ClientConfig, factory: TransportFactory, protocol: str) -> None:
        self.config = config
        self._factory = factory
        self.protocol = protocol
        self._chain = MiddlewareChain(config.middleware)
        self._transport: Transport | None = None
        self._lock = asyncio.Lock()
        self._closed_by_user = False
        self._stop = asyncio.Event()  # set by disconnect(): ends a retry loop at once
        self.reconnects = 0

    @classmethod
    def with_yamux(cls, config: ClientConfig | None = None) -> VirgaClient:
        return cls._with("yamux", config or ClientConfig())

    @classmethod
    def with_xtransport(cls, config: ClientConfig | None = None) -> VirgaClient:
        return cls._with("xtransport", config or ClientConfig())

    @classmethod
    def _with(cls, protocol: str, cfg: ClientConfig) -> VirgaClient:
        factory = transport_factory(
            protocol, yamux=cfg.yamux, xtransport=cfg.xtransport, max_message=cfg.max_message
        )
        return cls(cfg, factory, protocol)

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else "disconnected"
        return f"<VirgaClient {self.protocol} {self.config.target} {state}>"

    def is_connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    async def _open(self) -> Transport:
        timeout = self.config.connect_timeout_ms / 1000
        conn = await connect(self.config.target, timeout=timeout)
        transport = self._factory(conn, True)
        try:
            async with asyncio.timeout(timeout):
                await transport.start()
        except TimeoutError as err:
            await transport.close()
            raise VirgaTimeoutError(
                f"{self.protocol} handshake with {self.config.target} took over {timeout}s"
            ) from err
        except BaseException:
            await transport.close()
            raise
        return transport

    async def connect(self) -> None:
        """Connect (retrying per the reconnect policy, if any)."""
        async with self._lock:
            self._closed_by_user = False
            self._stop.clear()
            if self.is_connected():
                return
            self._transport = await self._connect_with_policy()

    async def _connect_with_policy(self) -> Transport:
        policy = self.config.reconnect
        if policy is None:
            return await self._open()
        attempt = 0
        while True:
            try:
                return await self._open()
            except (ConnectError, VirgaTimeoutError, ClosedError) as err:
                delay = policy.delay(attempt)
                attempt += 1
                if delay is None:
                    raise ConnectError(
                        f"gave up connecting to {self.config.target} "
                        f"after {attempt} attempts: {err}",
                        address=self.config.target,
                    ) from err
                log.info(
                    "virga: connect to %s failed (%s); retry in %.2fs",
                    self.config.target,
                    err,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    raise ClosedError(
                        f"disconnect() was called while reconnecting to {self.config.target}"
                    ) from err

    async def _active(self) -> Transport:
        transport = self._transport
        if transport is not None and transport.is_active():
            return transport
        if self._closed_by_user or (transport is None and self.config.reconnect is None):
            raise LocalProtocolError("the client is not connected; call connect() first")
        if self.config.reconnect is None:
            assert transport is not None
            raise ClosedError(f"the connection to {self.config.target} was lost")
        async with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            if self._closed_by_user:  # disconnect() ran while this call waited
                raise LocalProtocolError("the client is not connected; call connect() first")
            lost = self._transport
            if lost is not None:
                await lost.close()
            self._transport = await self._connect_with_policy()
            if lost is not None:  # a first connect made by a call is not a reconnect
                self.reconnects += 1
            log.info("virga: reconnected to %s", self.config.target)
            return self._transport

    async def send(self, data: bytes) -> None:
        transport = await self._active()
        await transport.send(await self._chain.outbound(bytes(data)))

    async def recv(self) -> bytes:
        transport = await self._active()
        return await self._chain.inbound(await transport.recv())

    async def ping(self) -> float:
        """Round trip to the server in seconds (the health check)."""
        transport = await self._active()
        return await transport.ping()

    async def open_stream(self) -> Stream:
        transport = await self._active()
        return await transport.open_stream()

    async def accept_stream(self) -> Stream:
        transport = await self._active()
        return await transport.accept_stream()

    async def disconnect(self) -> None:
        self._closed_by_user = True
        self._stop.set()  # a retry loop holding the lock gives up now
        async with self._lock:
            self._closed_by_user = True
            if self._transport is not None:
                await self._transport.close()
                self._transport = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()
