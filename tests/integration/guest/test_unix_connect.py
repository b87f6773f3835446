"""``unix.connect`` through the real agent (a host subprocess): a yamux stream spliced to
a Unix socket the test serves, with half-closes passed on both ways."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cargobay.guest.client import AgentClient, AgentError
from cargobay.guest.splice import SocketEnd, StreamEnd, splice

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(path: Path, handler: Handler) -> AsyncIterator[list[asyncio.Task[None]]]:
    """A Unix server at ``path``; yields the list of its connection tasks."""
    tasks: list[asyncio.Task[None]] = []

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.get_running_loop().create_task(handler(reader, writer)))

    server = await asyncio.start_unix_server(accepted, path=str(path))
    try:
        yield tasks
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def digest_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read to EOF, then answer with the SHA-256 and byte count of what came (only
    possible if the client's half-close arrived while its read side stays open)."""
    digest = hashlib.sha256()
    total = 0
    while data := await reader.read(65536):
        digest.update(data)
        total += len(data)
    writer.write(f"{total} {digest.hexdigest()}\n".encode())
    await writer.drain()
    writer.close()


async def test_bytes_both_ways_with_half_close(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    async with serve(path, digest_then_answer):
        stream = await client.connect_unix(str(path))
        await stream.write(payload)
        await stream.close()  # half-close: the server sees EOF, we still read
        answer = await asyncio.wait_for(stream.read_all(), 30)
    assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()


async def test_server_speaks_first_and_closes(client: AgentClient, tmp_path: Path) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the guest\n")
        await writer.drain()
        writer.write_eof()  # its sending half only: it still reads what comes
        data = await reader.read()
        assert data == b"bye"
        writer.close()

    path = tmp_path / "greet.sock"
    async with serve(path, greet) as tasks:
        stream = await client.connect_unix(str(path))
        assert await asyncio.wait_for(stream.read_all(), 10) == b"hello from the guest\n"
        await stream.write(b"bye")
        await stream.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)  # the assertion in greet held


async def test_many_concurrent_connections(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "many.sock"

    async def one(i: int) -> bytes:
        stream = await client.connect_unix(str(path))
        await stream.write(bytes([i]) * (1000 + i))
        await stream.close()
        return await asyncio.wait_for(stream.read_all(), 30)

    async with serve(path, digest_then_answer):
        answers = await asyncio.gather(*(one(i) for i in range(20)))
    for i, answer in enumerate(answers):
        data = bytes([i]) * (1000 + i)
        assert answer == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode()


async def test_missing_socket_is_not_found(client: AgentClient, tmp_path: Path) -> None:
    with pytest.raises(AgentError) as caught:
        await client.connect_unix(str(tmp_path / "nothing.sock"))
    assert caught.value.kind == "not_found"
    assert caught.value.errno == errno.ENOENT
    assert "nothing.sock" in str(caught.value)


async def test_refused_and_not_a_socket(client: AgentClient, tmp_path: Path) -> None:
    import socket

    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))  # bound, never listening: connect is refused
    try:
        with pytest.raises(AgentError) as caught:
            await client.connect_unix(str(stale))
        assert caught.value.errno == errno.ECONNREFUSED
        assert caught.value.kind == "io"
    finally:
        sock.close()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with pytest.raises(AgentError) as caught:
        await client.connect_unix(str(plain))
    assert caught.value.errno == errno.ECONNREFUSED
    with pytest.raises(AgentError) as caught:
        await client.connect_unix("relative.sock")
    assert caught.value.kind == "invalid"
    # the session survives every refusal
    assert (await client.info()).protocol >= 1


async def test_reset_by_host_closes_the_guest_socket(client: AgentClient, tmp_path: Path) -> None:
    closed = asyncio.Event()

    async def wait_for_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        closed.set()
        writer.close()

    path = tmp_path / "reset.sock"
    async with serve(path, wait_for_eof):
        stream = await client.connect_unix(str(path))
        await stream.write(b"partial")
        await stream.reset()
        await asyncio.wait_for(closed.wait(), 10)


async def test_splice_a_local_socket_through_the_agent(client: AgentClient, tmp_path: Path) -> None:
    """The host side of the Docker socket forwarder in small: a client socket spliced to
    the stream, the stream spliced (in the agent) to the server socket."""
    upstream = tmp_path / "up.sock"
    front = tmp_path / "front.sock"
    results = []

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = await client.connect_unix(str(upstream))
        results.append(await splice(SocketEnd(reader, writer), StreamEnd(stream)))

    payload = os.urandom(512 * 1024)
    async with serve(upstream, digest_then_answer), serve(front, forward) as tasks:
        reader, writer = await asyncio.open_unix_connection(str(front))
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
    assert results[0].error is None
    assert (results[0].a_to_b, results[0].b_to_a) == (len(payload), len(answer))
