"""The connection layer: ``connect(address)`` and ``listen(address)`` for every address kind.

See ``virga.address`` for the address forms:

    vsock:CID:PORT          AF_VSOCK                          (virga.connection.vsock)
    hvsock:UDS_PATH:PORT    Firecracker/Cloud Hypervisor       (virga.connection.hvsock)
    serial:PATH             virtio-serial device or chardev    (virga.connection.serial)
    unix:PATH, tcp:HOST:PORT                                   (virga.connection.net)

Every connect has a timeout (default ``DEFAULT_CONNECT_TIMEOUT``; ``None`` waits forever)
because some media hang: a vsock connect to an absent CID, a serial port whose host side
is not open, a VMM that never answers ``CONNECT``.  Failures are ``ConnectError`` (with
the address and what to check) or ``VirgaTimeoutError``.
"""

from __future__ import annotations

from virga.address import (
    Address,
    HybridVsockAddress,
    SerialAddress,
    TcpAddress,
    UnixAddress,
    VsockAddress,
    parse_address,
)
from virga.connection.base import (
    DEFAULT_READ_SIZE,
    ByteWriter,
    Connection,
    Listener,
    QueueListener,
    StreamConnection,
)
from virga.connection.hvsock import (
    HybridVsockConnection,
    HybridVsockMux,
    connect_hybrid_vsock,
    listen_hybrid_vsock,
)
from virga.connection.net import connect_tcp, connect_unix, listen_tcp, listen_unix
from virga.connection.serial import SerialConnection, connect_serial, listen_serial
from virga.connection.vsock import connect_vsock, listen_vsock

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_SIZE",
    "ByteWriter",
    "Connection",
    "HybridVsockConnection",
    "HybridVsockMux",
    "Listener",
    "QueueListener",
    "SerialConnection",
    "StreamConnection",
    "connect",
    "listen",
]

DEFAULT_CONNECT_TIMEOUT = 10.0


async def connect(
    address: str | Address, *, timeout: float | None = DEFAULT_CONNECT_TIMEOUT
) -> Connection:
    """Open a connection to ``address`` within ``timeout`` seconds."""
    addr = parse_address(address)
    match addr:
        case VsockAddress():
            return await connect_vsock(addr, timeout=timeout)
        case HybridVsockAddress():
            return await connect_hybrid_vsock(addr, timeout=timeout)
        case SerialAddress():
            return await connect_serial(addr, timeout=timeout)
        case UnixAddress():
            return await connect_unix(addr, timeout=timeout)
        case TcpAddress():
            return await connect_tcp(addr, timeout=timeout)


async def listen(address: str | Address, *, backlog: int = 128) -> Listener:
    """Listen on ``address``; close the listener (or use ``async with``) to stop.

    For ``hvsock:UDS_PATH:PORT`` this accepts guest-initiated connections to host port
    ``PORT`` (on ``UDS_PATH_PORT``); for a ``serial:`` device, one connection at a time.
    """
    addr = parse_address(address)
    match addr:
        case VsockAddress():
            return await listen_vsock(addr, backlog=backlog)
        case HybridVsockAddress():
            return await listen_hybrid_vsock(addr, backlog=backlog)
        case SerialAddress():
            return await listen_serial(addr, backlog=backlog)
        case UnixAddress():
            return await listen_unix(addr, backlog=backlog)
        case TcpAddress():
            return await listen_tcp(addr, backlog=backlog)
