"""The connection layer: ``connect(address)`` and ``listen(address)`` for every address kind.

See ``virga.address`` for the address forms.  Every connect has a timeout (default
``DEFAULT_CONNECT_TIMEOUT``) because some media (vsock to an absent CID) hang forever.
"""

from __future__ import annotations

from virga.address import Address, TcpAddress, UnixAddress, parse_address
from virga.connection.base import (
    DEFAULT_READ_SIZE,
    Connection,
    Listener,
    QueueListener,
    StreamConnection,
)
from virga.connection.net import connect_tcp, connect_unix, listen_tcp, listen_unix
from virga.errors import ConfigError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_SIZE",
    "Connection",
    "Listener",
    "QueueListener",
    "StreamConnection",
    "connect",
    "listen",
]

DEFAULT_CONNECT_TIMEOUT = 10.0


async def connect(
    address: str | Address, *, timeout: float | None = DEFAULT_CONNECT_TIMEOUT
) -> Connection:
    """Open a connection to ``address``."""
    addr = parse_address(address)
    if isinstance(addr, UnixAddress):
        return await connect_unix(addr, timeout=timeout)
    if isinstance(addr, TcpAddress):
        return await connect_tcp(addr, timeout=timeout)
    raise ConfigError(f"connecting to {addr} is not supported yet")


async def listen(address: str | Address, *, backlog: int = 128) -> Listener:
    """Listen on ``address``; close the listener (or use ``async with``) to stop."""
    addr = parse_address(address)
    if isinstance(addr, UnixAddress):
        return await listen_unix(addr, backlog=backlog)
    if isinstance(addr, TcpAddress):
        return await listen_tcp(addr, backlog=backlog)
    raise ConfigError(f"listening on {addr} is not supported yet")
