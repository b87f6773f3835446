"""One forwarding Unix socket: accept clients, open an upstream per client, splice.

``Forwarder`` owns its socket file from ``start`` to ``close``: it claims the path first
(``claim_socket_path``: a stale socket left by a crashed process is replaced, a live
socket or any other file is refused), listens with mode 0600, and at the end removes
the file only if it is still the one it created.  Every accepted connection gets its
own upstream connection (``open_upstream``) and is spliced to it byte for byte
(``cargobay.guest.splice``), so HTTP keep-alive, chunked streams and the connections
the Docker CLI hijacks for ``attach``/``run`` pass through untouched.

When the upstream cannot be opened (the machine stopped, dockerd is not up, the host
engine is gone), the client gets an HTTP answer instead of a dropped connection: the
Docker CLI prints ``Error response from daemon: <message>``.  The forwarder reads the
client's request head first (bounded in size and time) so that the answer is not lost
in a client still writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final

from cargobay.errors import CargoBayError, DockerSocketInUse, InvalidInput
from cargobay.guest.splice import ByteEnd, SocketEnd, splice

__all__ = ["Forwarder", "OpenUpstream", "claim_socket_path", "error_reply"]

log = logging.getLogger("cargobay.dockersock")

OpenUpstream = Callable[[], Awaitable[ByteEnd]]
"""Opens one upstream connection; raises a ``CargoBayError`` that says why not."""

REQUEST_HEAD_LIMIT: Final = 64 * 1024
REQUEST_HEAD_TIMEOUT: Final = 5.0
PROBE_TIMEOUT: Final = 1.0


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new socket, or raise ``DockerSocketInUse``.

    Nothing there: fine.  A socket nobody listens on (connect says ECONNREFUSED): a stale
    one, removed.  A socket something answers on, or a file that is not a socket:
    refused, never replaced.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise DockerSocketInUse(
            f"{path} exists and is not a socket; refusing to replace it (remove it or pick "
            "another --socket)"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        log.info("removing the stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as err:
        if err.errno in (errno.ENOENT,):
            return
        raise DockerSocketInUse(f"{path} is a socket that cannot be checked ({err})") from err
    finally:
        probe.close()
    raise DockerSocketInUse(
        f"{path} is in use: a server is listening on it (another docker-socket, or a "
        "dockerd); stop it or pick another --socket"
    )


def error_reply(err: BaseException) -> bytes:
    """An HTTP/1.1 answer carrying ``err`` the way the Docker Engine words errors."""
    status = getattr(err, "status", 502) if isinstance(err, CargoBayError) else 502
    if status < 400 or status == 500:
        status = 502
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        status, reason = 502, HTTPStatus.BAD_GATEWAY.phrase
    body = json.dumps({"message": f"cargobay docker-socket: {err}"}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


async def _read_request_head(reader: asyncio.StreamReader) -> None:
    """Read up to the end of the client's request head (or give up quietly)."""
    with contextlib.suppress(
        TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError
    ):
        async with asyncio.timeout(REQUEST_HEAD_TIMEOUT):
            await reader.readuntil(b"\r\n\r\n")


class Forwarder:
    """A listening socket at ``path`` whose clients are spliced to ``open_upstream()``."""

    def __init__(self, path: str, open_upstream: OpenUpstream, description: str) -> None:
        self.path = path
        self.description = description
        self._open_upstream = open_upstream
        self._server: asyncio.Server | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.created_at = datetime.now(UTC)
        self.connections = 0
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        claim_socket_path(self.path)
        try:
            self._server = await asyncio.start_unix_server(
                self._accepted, path=self.path, limit=REQUEST_HEAD_LIMIT
            )
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise DockerSocketInUse(f"{self.path} is in use ({err.strerror})") from err
            raise InvalidInput(f"cannot listen on {self.path}: {err.strerror or err}") from err
        info = os.stat(self.path)
        self._inode = (info.st_dev, info.st_ino)
        os.chmod(self.path, 0o600)
        log.info("docker socket %s forwards to %s", self.path, self.description)

    async def close(self) -> None:
        """Stop accepting, cut every open connection, remove the socket file."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self._remove_socket()

    def _remove_socket(self) -> None:
        try:
            info = os.lstat(self.path)
        except OSError:
            return
        if self._inode == (info.st_dev, info.st_ino):
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self._inode = None

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        client = SocketEnd(reader, writer)
        try:
            upstream = await self._open_upstream()
        except asyncio.CancelledError:
            await client.abort()
            raise
        except Exception as err:
            if not isinstance(err, CargoBayError):
                log.exception("opening the upstream of %s failed", self.path)
            await self._refuse(client, err)
            return
        result = await splice(client, upstream)
        self.bytes_in += result.a_to_b
        self.bytes_out += result.b_to_a
        if result.error is not None:
            log.debug("a connection on %s ended: %s", self.path, result.error)

    async def _refuse(self, client: SocketEnd, err: BaseException) -> None:
        log.info("docker socket %s: %s", self.path, err)
        try:
            await _read_request_head(client.reader)
            await client.write(error_reply(err))
            await client.close()
        except OSError:
            await client.abort()
