"""The forwarding socket on its own (``cargobay.dockersock.listener.Forwarder``): real
Unix sockets and the real docker CLI, upstreams made by the test."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cargobay.dockersock.listener import Forwarder
from cargobay.errors import DockerSocketInUse, NoDockerEngine
from cargobay.guest.splice import ByteEnd, SocketEnd
from tests.support import require_binary


async def docker(sock: Path, *args: str) -> tuple[int, str, str]:
    binary = require_binary("docker", "Debian: apt-get install docker.io")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{sock}"
    proc = await asyncio.create_subprocess_exec(
        binary,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_upstream_failure_reaches_the_docker_cli_as_an_error(tmp_path: Path) -> None:
    async def no_engine() -> ByteEnd:
        raise NoDockerEngine("machine 'dock' has no Docker engine: build the docker image")

    sock = tmp_path / "d.sock"
    forwarder = Forwarder(str(sock), no_engine, "nowhere")
    await forwarder.start()
    try:
        code, _, err = await docker(sock, "ps")
    finally:
        await forwarder.close()
    assert code != 0
    assert "Error response from daemon" in err
    assert "machine 'dock' has no Docker engine: build the docker image" in err
    assert forwarder.connections >= 1
    assert not sock.exists()


async def test_bytes_reach_the_upstream_unchanged(tmp_path: Path) -> None:
    """An upstream that records what it got and answers one canned HTTP response: the
    forwarder passes the client's request through byte for byte."""
    received = bytearray()
    upstream = tmp_path / "up.sock"
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n[]"
    )

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readuntil(b"\r\n\r\n")
        received.extend(data)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(engine, path=str(upstream))

    async def open_upstream() -> ByteEnd:
        return SocketEnd(*await asyncio.open_unix_connection(str(upstream)))

    sock = tmp_path / "d.sock"
    forwarder = Forwarder(str(sock), open_upstream, f"unix://{upstream}")
    await forwarder.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        request = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nX-Odd:  spaced \r\n\r\n"
        writer.write(request)
        await writer.drain()
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await forwarder.close()
        server.close()
    assert bytes(received) == request
    assert got == answer


async def test_close_leaves_a_file_that_replaced_the_socket(tmp_path: Path) -> None:
    async def unused() -> ByteEnd:
        raise AssertionError("no client connects")

    sock = tmp_path / "d.sock"
    forwarder = Forwarder(str(sock), unused, "nowhere")
    await forwarder.start()
    sock.unlink()
    sock.write_text("someone else's")
    await forwarder.close()
    assert sock.read_text() == "someone else's"


async def test_a_live_socket_is_not_taken_over(tmp_path: Path) -> None:
    async def unused() -> ByteEnd:
        raise AssertionError("no client connects")

    sock = tmp_path / "d.sock"
    first = Forwarder(str(sock), unused, "first")
    await first.start()
    try:
        with pytest.raises(DockerSocketInUse, match="in use"):
            await Forwarder(str(sock), unused, "second").start()
        assert sock.is_socket()
    finally:
        await first.close()
    assert not sock.exists()


async def test_close_cuts_open_connections(tmp_path: Path) -> None:
    upstream = tmp_path / "up.sock"
    hold = asyncio.Event()

    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()

    server = await asyncio.start_unix_server(engine, path=str(upstream))

    async def open_upstream() -> ByteEnd:
        return SocketEnd(*await asyncio.open_unix_connection(str(upstream)))

    sock = tmp_path / "d.sock"
    forwarder = Forwarder(str(sock), open_upstream, "held")
    await forwarder.start()
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(b"GET /events HTTP/1.1\r\n\r\n")
    await writer.drain()
    for _ in range(100):
        if forwarder.active:
            break
        await asyncio.sleep(0.01)
    assert forwarder.active == 1
    await asyncio.wait_for(forwarder.close(), 10)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # cut, not left hanging
    assert forwarder.active == 0
    writer.close()
    hold.set()
    server.close()
