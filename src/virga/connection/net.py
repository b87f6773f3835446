"""Unix and TCP stream sockets: the plain connections, and the base for hybrid vsock
and for the host side of virtio-serial (a QEMU chardev socket).

Errors say which address failed and what to check: a missing socket file or a refused
connection usually means the server is not running.  Listening on a Unix path removes a
stale socket file left by a dead server, refuses to take over a path where a live server
still answers, and never removes anything that is not a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat

from virga.address import TcpAddress, UnixAddress
from virga.connection.base import QueueListener, StreamConnection, stream_limit
from virga.errors import ConnectError, VirgaTimeoutError

__all__ = [
    "connect_tcp",
    "connect_unix",
    "listen_tcp",
    "listen_unix",
    "open_unix_streams",
    "remove_stale_socket",
]


def _unix_connect_error(addr: UnixAddress, desc: str, err: OSError) -> ConnectError:
    shown = addr.path
    if isinstance(err, FileNotFoundError):
        why = f"no socket at {shown} (is the server running?)"
    elif isinstance(err, ConnectionRefusedError):
        try:
            is_sock = addr.abstract or stat.S_ISSOCK(os.stat(addr.path).st_mode)
        except OSError:
            is_sock = True
        if is_sock:
            why = f"nothing is listening on {shown} (is the server running? stale socket file?)"
        else:
            why = f"{shown} is not a socket"
    elif isinstance(err, PermissionError):
        why = f"permission denied on {shown}"
    else:
        why = err.strerror or str(err)
    return ConnectError(f"cannot connect to {desc}: {why}", address=desc)


async def open_unix_streams(
    addr: UnixAddress, *, timeout: float | None, description: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a Unix socket; the errors of ``connect_unix``, named ``description``."""
    try:
        return await asyncio.wait_for(
            asyncio.open_unix_connection(addr.socket_path, limit=stream_limit()), timeout
        )
    except TimeoutError as err:
        raise VirgaTimeoutError(
            f"connecting to {description} timed out after {timeout}s"
        ) from err
    except OSError as err:
        raise _unix_connect_error(addr, description, err) from err


async def connect_unix(
    addr: UnixAddress, *, timeout: float | None, description: str | None = None
) -> StreamConnection:
    desc = description or str(addr)
    reader, writer = await open_unix_streams(addr, timeout=timeout, description=desc)
    return StreamConnection(reader, writer, desc)


_SO_ACCEPTCON = 0x10000  # "Flags" of a listening socket in /proc/net/unix


def _probe_connect(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (BlockingIOError, InterruptedError):
        return True  # the server's backlog is full: alive, just busy
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


def _socket_is_live(path: str) -> bool:
    """Whether a server still listens on the Unix socket file at ``path``.

    Looks it up in ``/proc/net/unix`` rather than connecting, because a probe
    connection would show up at the live server as a client that says nothing.  Only
    when that table is unreadable, or names a relative path we cannot resolve, does it
    fall back to connecting.
    """
    try:
        mine = os.lstat(path)
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return _probe_connect(path)
    ambiguous = False
    base = os.path.basename(path)
    for line in lines:
        fields = line.split(None, 7)
        if len(fields) < 8 or not int(fields[3], 16) & _SO_ACCEPTCON:
            continue
        bound = fields[7]
        if bound.startswith("@"):
            continue
        if os.path.isabs(bound):
            try:
                other = os.lstat(bound)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (mine.st_dev, mine.st_ino):
                return True
        elif os.path.basename(bound) == base:
            ambiguous = True
    return _probe_connect(path) if ambiguous else False


def remove_stale_socket(path: str, desc: str) -> None:
    """Remove a leftover socket file so a restarted server can bind; never remove other
    files, nor a socket a live server still answers on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConnectError(
            f"cannot listen on {desc}: {path} exists and is not a socket (remove it or "
            "choose another path)",
            address=desc,
        )
    if _socket_is_live(path):
        raise ConnectError(
            f"cannot listen on {desc}: another server is already listening on {path}",
            address=desc,
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def listen_unix(
    addr: UnixAddress, *, description: str | None = None, backlog: int = 128
) -> QueueListener:
    desc = description or str(addr)
    listener = QueueListener(desc, backlog=backlog)
    if not addr.abstract:
        remove_stale_socket(addr.path, desc)
    try:
        server = await asyncio.start_unix_server(
            listener.on_client, addr.socket_path, limit=stream_limit(), backlog=backlog
        )
    except OSError as err:
        why = err.strerror or str(err)
        if err.errno == errno.EADDRINUSE:
            why = f"{addr.path} is in use by another server"
        raise ConnectError(f"cannot listen on {desc}: {why}", address=desc) from err
    if not addr.abstract:
        inode = os.lstat(addr.path).st_ino

        def cleanup() -> None:
            # Remove the path only if it is still our socket (not one a successor bound).
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(addr.path).st_ino == inode:
                    os.unlink(addr.path)

        listener.attach(server, cleanup=cleanup)
    else:
        listener.attach(server)
    return listener


async def connect_tcp(addr: TcpAddress, *, timeout: float | None) -> StreamConnection:
    desc = str(addr)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(addr.host, addr.port, limit=stream_limit()), timeout
        )
    except TimeoutError as err:
        raise VirgaTimeoutError(f"connecting to {desc} timed out after {timeout}s") from err
    except socket.gaierror as err:
        raise ConnectError(
            f"cannot connect to {desc}: cannot resolve host {addr.host!r} ({err.strerror})",
            address=desc,
        ) from err
    except ConnectionRefusedError as err:
        raise ConnectError(
            f"cannot connect to {desc}: connection refused (is the server running and "
            f"listening on port {addr.port}?)",
            address=desc,
        ) from err
    except OSError as err:
        why = err.strerror or str(err)
        raise ConnectError(f"cannot connect to {desc}: {why}", address=desc) from err
    # asyncio already sets TCP_NODELAY on every TCP transport.
    return StreamConnection(reader, writer, desc)


async def listen_tcp(addr: TcpAddress, *, backlog: int = 128) -> QueueListener:
    desc = str(addr)
    listener = QueueListener(desc, backlog=backlog)
    try:
        server = await asyncio.start_server(
            listener.on_client, addr.host, addr.port, limit=stream_limit(), backlog=backlog
        )
    except socket.gaierror as err:
        raise ConnectError(
            f"cannot listen on {desc}: cannot resolve host {addr.host!r} ({err.strerror})",
            address=desc,
        ) from err
    except OSError as err:
        why = err.strerror or str(err)
        if err.errno == errno.EADDRINUSE:
            why = f"port {addr.port} is already in use"
        raise ConnectError(f"cannot listen on {desc}: {why}", address=desc) from err
    bound = desc
    if addr.port == 0 and server.sockets:
        port = server.sockets[0].getsockname()[1]
        bound = str(TcpAddress(addr.host, port))
    listener.attach(server, description=bound)
    return listener
