"""Unix and TCP stream sockets: the plain connections, and the base for hybrid vsock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

from virga.address import TcpAddress, UnixAddress
from virga.connection.base import QueueListener, StreamConnection, stream_limit
from virga.errors import ConfigError, ConnectError, VirgaTimeoutError

__all__ = ["connect_tcp", "connect_unix", "listen_tcp", "listen_unix"]


async def connect_unix(
    addr: UnixAddress, *, timeout: float | None, description: str | None = None
) -> StreamConnection:
    desc = description or str(addr)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(addr.socket_path, limit=stream_limit()), timeout
        )
    except TimeoutError as err:
        raise VirgaTimeoutError(f"connecting to {desc} timed out after {timeout}s") from err
    except FileNotFoundError as err:
        raise ConnectError(
            f"cannot connect to {desc}: no socket at {addr.path} (is the server running?)",
            address=desc,
        ) from err
    except OSError as err:
        raise ConnectError(f"cannot connect to {desc}: {err.strerror or err}", address=desc) from err
    return StreamConnection(reader, writer, desc)


def _remove_stale_socket(path: str) -> None:
    """Remove a leftover socket file so a restarted server can bind; never remove other files."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"cannot listen on {path}: it exists and is not a socket")
    os.unlink(path)


async def listen_unix(
    addr: UnixAddress, *, description: str | None = None, backlog: int = 128
) -> QueueListener:
    desc = description or str(addr)
    listener = QueueListener(desc, backlog=backlog)
    abstract = addr.path.startswith("@")
    if not abstract:
        _remove_stale_socket(addr.path)
    try:
        server = await asyncio.start_unix_server(
            listener.on_client, addr.socket_path, limit=stream_limit(), backlog=backlog
        )
    except OSError as err:
        raise ConnectError(f"cannot listen on {desc}: {err.strerror or err}", address=desc) from err

    def cleanup() -> None:
        if not abstract:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(addr.path)

    listener.attach(server, cleanup=cleanup)
    return listener


async def connect_tcp(addr: TcpAddress, *, timeout: float | None) -> StreamConnection:
    desc = str(addr)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(addr.host, addr.port, limit=stream_limit()), timeout
        )
    except TimeoutError as err:
        raise VirgaTimeoutError(f"connecting to {desc} timed out after {timeout}s") from err
    except OSError as err:
        raise ConnectError(f"cannot connect to {desc}: {err.strerror or err}", address=desc) from err
    return StreamConnection(reader, writer, desc)


async def listen_tcp(addr: TcpAddress, *, backlog: int = 128) -> QueueListener:
    desc = str(addr)
    listener = QueueListener(desc, backlog=backlog)
    try:
        server = await asyncio.start_server(
            listener.on_client, addr.host, addr.port, limit=stream_limit(), backlog=backlog
        )
    except OSError as err:
        raise ConnectError(f"cannot listen on {desc}: {err.strerror or err}", address=desc) from err
    listener.attach(server)
    return listener
