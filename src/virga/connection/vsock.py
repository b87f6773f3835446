"""AF_VSOCK connections: ``vsock:CID:PORT``.

Connect uses a non-blocking socket and ``loop.sock_connect`` under a timeout, then hands
the socket to asyncio's streams.  The timeout is not optional in spirit: a connect to a
CID nobody answers for (``vsock:1:PORT`` without ``vsock_loopback``, a stopped VM) hangs
until the kernel's own connect timeout, or forever on some transports.

Errors are translated into what to check: ``EAFNOSUPPORT`` means the kernel has no
vsock support loaded; ``ENODEV`` means no transport reaches that CID; a refused or
reset connect means nothing listens on the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import struct

from virga.address import VMADDR_PORT_ANY, VsockAddress
from virga.connection.base import QueueListener, StreamConnection, stream_limit
from virga.errors import ConnectError, VirgaTimeoutError

__all__ = ["connect_vsock", "listen_vsock", "local_cid", "vsock_socket"]

# <linux/vm_sockets.h>: _IO(7, 0xb9), on /dev/vsock.
_IOCTL_VM_SOCKETS_GET_LOCAL_CID = 0x7B9

_NO_KERNEL_SUPPORT = (
    "AF_VSOCK is not supported by this kernel: load the vsock modules "
    "(in a guest: modprobe vmw_vsock_virtio_transport; on a host: modprobe vhost_vsock), "
    "or use hvsock:, serial:, unix: or tcp: instead"
)


def local_cid() -> int | None:
    """This machine's vsock CID (``None`` if there is no ``/dev/vsock`` or it can't say)."""
    try:
        fd = os.open("/dev/vsock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = fcntl.ioctl(fd, _IOCTL_VM_SOCKETS_GET_LOCAL_CID, b"\0" * 4)
    except OSError:
        return None
    finally:
        os.close(fd)
    cid: int = struct.unpack("=I", raw)[0]
    return cid


def vsock_socket(description: str) -> socket.socket:
    """A new non-blocking AF_VSOCK stream socket, or a ``ConnectError`` that says why not."""
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        raise ConnectError(
            f"cannot use {description}: this Python/platform has no AF_VSOCK", address=description
        )
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as err:
        if err.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT):
            raise ConnectError(
                f"cannot use {description}: {_NO_KERNEL_SUPPORT}", address=description
            ) from err
        raise ConnectError(
            f"cannot use {description}: {err.strerror or err}", address=description
        ) from err
    sock.setblocking(False)
    return sock


def connect_error(addr: VsockAddress, err: OSError) -> ConnectError:
    """Translate a failed vsock connect into an error that says what to check."""
    desc = str(addr)
    code = err.errno
    if code == errno.ECONNREFUSED:
        why = f"connection refused: nothing listens on port {addr.port} (is the server running?)"
    elif code == errno.ECONNRESET:
        why = (
            f"connection reset: nothing listens on port {addr.port} at CID {addr.cid} "
            "(is the server running?)"
        )
    elif code == errno.ENODEV:
        mine = local_cid()
        if mine is not None and mine == addr.cid:
            why = f"CID {addr.cid} is this machine's own CID and no loopback transport is loaded"
        else:
            why = f"no vsock transport reaches CID {addr.cid} (no vsock device or driver?)"
    elif code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        why = f"CID {addr.cid} is unreachable (is the VM running?)"
    elif code in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        why = _NO_KERNEL_SUPPORT
    else:
        why = err.strerror or str(err)
    return ConnectError(f"cannot connect to {desc}: {why}", address=desc)


async def connect_vsock(addr: VsockAddress, *, timeout: float | None) -> StreamConnection:
    desc = str(addr)
    sock = vsock_socket(desc)
    loop = asyncio.get_running_loop()
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (addr.cid, addr.port)), timeout)
        except TimeoutError as err:
            # Ours (wait_for) or the kernel's ETIMEDOUT, which Python also maps to TimeoutError.
            if isinstance(err, OSError) and err.errno == errno.ETIMEDOUT:
                after = "the kernel's connect timeout"
            else:
                after = f"{timeout}s"
            raise VirgaTimeoutError(
                f"connecting to {desc} timed out after {after} "
                f"(is a VM with CID {addr.cid} running and listening on port {addr.port}?)"
            ) from err
        except OSError as err:
            raise connect_error(addr, err) from err
        reader, writer = await asyncio.open_connection(sock=sock, limit=stream_limit())
    except BaseException:
        sock.close()
        raise
    return StreamConnection(reader, writer, desc)


async def listen_vsock(addr: VsockAddress, *, backlog: int = 128) -> QueueListener:
    desc = str(addr)
    sock = vsock_socket(desc)
    try:
        sock.bind((addr.cid, addr.port))
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            why = f"port {addr.port} is already in use"
        elif err.errno == errno.EADDRNOTAVAIL:
            why = (
                f"CID {addr.cid} is not a local CID (listen on vsock:any:{addr.port} "
                "or this machine's own CID)"
            )
        else:
            why = err.strerror or str(err)
        raise ConnectError(f"cannot listen on {desc}: {why}", address=desc) from err
    listener = QueueListener(desc, backlog=backlog)
    try:
        server = await asyncio.start_server(
            listener.on_client, sock=sock, limit=stream_limit(), backlog=backlog
        )
    except BaseException:
        sock.close()
        raise
    bound = desc
    if addr.port == VMADDR_PORT_ANY:
        # The kernel picked the port: describe the listener by the real one.
        with contextlib.suppress(OSError):
            bound = str(VsockAddress(addr.cid, sock.getsockname()[1]))
    listener.attach(server, description=bound)
    return listener
