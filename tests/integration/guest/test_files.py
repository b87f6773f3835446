"""File operations through the real agent (a host subprocess): the same filesystem, so
the tests check the agent's work directly on disk."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargobay.guest.client import AgentClient, AgentError

from .conftest import AgentFactory, path_exists


async def test_write_read_stat_list(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    assert await client.write_file(str(path), b"hello\n") == 6
    assert path.read_bytes() == b"hello\n"
    assert await client.read_file(str(path)) == b"hello\n"
    info = await client.stat(str(path))
    assert (info.name, info.path, info.type, info.size) == ("hello.txt", str(path), "file", 6)
    assert info.is_file
    assert info.mode == 0o644
    assert info.uid == os.getuid()
    assert abs(info.mtime - path.stat().st_mtime) < 1e-3
    assert info.target is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to("hello.txt")
    entries = await client.list_dir(str(tmp_path))
    assert [(e.name, e.type) for e in entries] == [
        ("hello.txt", "file"),
        ("link", "symlink"),
        ("sub", "dir"),
    ]
    assert entries[1].target == "hello.txt"
    assert entries[2].is_dir
    assert (await client.stat(str(tmp_path / "link"))).type == "symlink"


async def test_ten_megabytes_both_ways(client: AgentClient, tmp_path: Path) -> None:
    data = os.urandom(10 * 1024 * 1024 + 123)
    path = tmp_path / "big.bin"
    assert await client.write_file(str(path), data) == len(data)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    back = await client.read_file(str(path))
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


async def test_streaming_variants(client: AgentClient, tmp_path: Path) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([i]) * 100_000
            await asyncio.sleep(0)

    path = tmp_path / "streamed"
    assert await client.write_file(str(path), pieces()) == 5_000_000
    expected = b"".join(bytes([i]) * 100_000 for i in range(50))
    assert path.read_bytes() == expected

    sink = io.BytesIO()
    assert await client.read_file_to(str(path), sink) == len(expected)
    assert sink.getvalue() == expected

    sizes = [len(chunk) async for chunk in client.read_file_chunks(str(path))]
    assert sum(sizes) == len(expected)
    assert max(sizes) <= 64 * 1024

    # From a binary file object.
    copy = tmp_path / "copy"
    with path.open("rb") as source:
        assert await client.write_file(str(copy), source) == len(expected)
    assert copy.read_bytes() == expected


async def test_read_with_offset_and_length(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "digits"
    path.write_bytes(b"0123456789" * 10_000)
    assert await client.read_file(str(path), offset=5, length=7) == b"5678901"
    assert await client.read_file(str(path), offset=99_995) == b"56789"
    assert await client.read_file(str(path), offset=200_000) == b""
    assert await client.read_file(str(path), length=0) == b""


async def test_stopping_a_read_early(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(os.urandom(5_000_000))
    async for _chunk in client.read_file_chunks(str(path)):
        break
    assert await client.read_file(str(path), length=3) == path.read_bytes()[:3]


async def test_mode_mkdirs_and_append(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "secret"
    with pytest.raises(AgentError) as missing:
        await client.write_file(str(path), b"x")
    assert missing.value.kind == "not_found"
    await client.write_file(str(path), b"x", mode=0o600, mkdirs=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await client.write_file(str(path), b"y")  # a rewrite keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await client.write_file(str(path), b"z", append=True) == 1
    assert path.read_bytes() == b"yz"


async def test_write_through_a_symlink(client: AgentClient, tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real")
    await client.write_file(str(tmp_path / "link"), b"new")
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "real").read_bytes() == b"new"


async def test_failed_write_keeps_the_old_file(client: AgentClient, tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"old contents")

    class SourceBroke(Exception):
        pass

    async def failing() -> AsyncIterator[bytes]:
        yield b"new contents, part 1" * 10_000
        await asyncio.sleep(0.05)
        raise SourceBroke

    with pytest.raises(SourceBroke):
        await client.write_file(str(path), failing())
    assert path.read_bytes() == b"old contents"
    await only_file_left(tmp_path, "config")  # the temporary file goes away
    # The same when the connection itself goes away mid-write.
    task = asyncio.ensure_future(client.write_file(str(path), failing()))
    await asyncio.sleep(0.02)
    await client.close()
    with pytest.raises((AgentError, SourceBroke)):
        await task
    assert path.read_bytes() == b"old contents"
    await only_file_left(tmp_path, "config")


async def only_file_left(directory: Path, name: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while os.listdir(directory) != [name]:
        assert loop.time() < deadline, os.listdir(directory)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("op", "target", "kind", "number"),
    [
        ("read", "missing", "not_found", errno.ENOENT),
        ("read", "", "is_a_directory", errno.EISDIR),
        ("read", "file/below", "not_a_directory", errno.ENOTDIR),
        ("write", "", "is_a_directory", errno.EISDIR),
        ("write", "file/below", "not_a_directory", errno.ENOTDIR),
        ("stat", "missing", "not_found", errno.ENOENT),
        ("list", "missing", "not_found", errno.ENOENT),
        ("list", "file", "not_a_directory", errno.ENOTDIR),
    ],
)
async def test_errors_are_mapped(
    client: AgentClient, tmp_path: Path, op: str, target: str, kind: str, number: int
) -> None:
    (tmp_path / "file").write_bytes(b"x")
    path = str(tmp_path / target)

    async def call() -> object:
        if op == "read":
            return await client.read_file(path)
        if op == "write":
            return await client.write_file(path, b"data" * 100_000)
        if op == "stat":
            return await client.stat(path)
        return await client.list_dir(path)

    with pytest.raises(AgentError) as info:
        await call()
    assert (info.value.kind, info.value.errno) == (kind, number)
    assert path in str(info.value)
    assert (await client.exec(["true"])).ok  # still serving


async def test_relative_paths_are_invalid(client: AgentClient) -> None:
    for call in (client.read_file("etc/passwd"), client.stat("x"), client.list_dir(".")):
        with pytest.raises(AgentError, match="absolute") as info:
            await call
        assert info.value.kind == "invalid"
    with pytest.raises(AgentError) as write:
        await client.write_file("x", b"")
    assert write.value.kind == "invalid"


async def test_read_refuses_a_fifo(client: AgentClient, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AgentError) as info:
        await client.read_file(str(fifo))
    assert info.value.kind == "invalid"


async def test_permission_errors(agents: AgentFactory, tmp_path: Path) -> None:
    # Root bypasses file permissions, so run an agent as an ordinary user.
    if os.geteuid() == 0:
        python = shutil.which("python3", path="/usr/bin:/bin")
        if python is None:
            pytest.skip("no system python3 an unprivileged user can run")
        agent = await agents.start(python=python, user="nobody")
    else:
        agent = await agents.start()
    client = await agents.client(agent)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "f").write_bytes(b"x")
    if os.geteuid() != 0:
        private.chmod(0o000)
    try:
        for call in (
            client.read_file(str(private / "f")),
            client.list_dir(str(private)),
            client.write_file(str(private / "g"), b"x"),
            client.write_file("/etc/cargobay-test-denied", b"x"),
        ):
            with pytest.raises(AgentError) as info:
                await call
            assert (info.value.kind, info.value.errno) == ("permission", errno.EACCES)
    finally:
        private.chmod(0o700)
    assert not path_exists("/etc/cargobay-test-denied")
