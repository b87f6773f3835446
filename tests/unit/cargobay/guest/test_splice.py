"""``cargobay.guest.splice`` over in-memory sides: order, half-close, failure, cancel.

The sides are ``MemoryEnd``s, a test implementation of the ``ByteEnd`` interface (no
sockets): what the splice writes to a side lands in ``written``; what the test ``feed``s
is what the side reads."""

from __future__ import annotations

import asyncio

import pytest

from cargobay.guest.splice import CHUNK, splice


class MemoryEnd:
    def __init__(self, name: str) -> None:
        self.name = name
        self._incoming: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.written = bytearray()
        self.eof_written = False
        self.closed = False
        self.aborted = False
        self.fail_writes: BaseException | None = None

    def feed(self, data: bytes) -> None:
        self._incoming.put_nowait(data)

    def feed_eof(self) -> None:
        self._incoming.put_nowait(b"")

    def feed_error(self, err: BaseException) -> None:
        self._incoming.put_nowait(err)

    async def read(self, max_bytes: int) -> bytes:
        item = await self._incoming.get()
        if isinstance(item, BaseException):
            raise item
        assert len(item) <= max_bytes
        return item

    async def write(self, data: bytes) -> None:
        assert not self.eof_written, f"{self.name}: write after write_eof"
        if self.fail_writes is not None:
            raise self.fail_writes
        self.written += data

    async def write_eof(self) -> None:
        self.eof_written = True

    async def close(self) -> None:
        self.closed = True

    async def abort(self) -> None:
        self.aborted = True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bytes_pass_both_ways_in_order_and_both_sides_close() -> None:
    a, b = MemoryEnd("a"), MemoryEnd("b")
    task = asyncio.ensure_future(splice(a, b))
    for i in range(10):
        a.feed(f"req{i};".encode())
        b.feed(f"resp{i};".encode())
    a.feed_eof()
    b.feed_eof()
    result = await asyncio.wait_for(task, 5)
    assert bytes(b.written) == b"".join(f"req{i};".encode() for i in range(10))
    assert bytes(a.written) == b"".join(f"resp{i};".encode() for i in range(10))
    assert (result.a_to_b, result.b_to_a, result.error) == (len(b.written), len(a.written), None)
    assert a.eof_written
    assert b.eof_written
    assert a.closed
    assert b.closed
    assert not a.aborted
    assert not b.aborted


async def test_half_close_is_passed_on_and_the_other_way_goes_on() -> None:
    a, b = MemoryEnd("client"), MemoryEnd("engine")
    task = asyncio.ensure_future(splice(a, b))
    a.feed(b"GET /attach")
    a.feed_eof()  # the client closed its sending half (CloseWrite)
    await settle()
    assert b.eof_written
    assert not b.closed
    assert not task.done()
    b.feed(b"output after the client's EOF")
    await settle()
    assert bytes(a.written) == b"output after the client's EOF"
    b.feed_eof()
    result = await asyncio.wait_for(task, 5)
    assert result.error is None
    assert a.eof_written
    assert a.closed
    assert b.closed


async def test_a_failing_side_aborts_both_and_is_reported() -> None:
    a, b = MemoryEnd("a"), MemoryEnd("b")
    task = asyncio.ensure_future(splice(a, b))
    a.feed(b"some")
    await settle()
    b.feed_error(ConnectionResetError("reset by peer"))
    result = await asyncio.wait_for(task, 5)
    assert isinstance(result.error, ConnectionResetError)
    assert a.aborted
    assert b.aborted
    assert not a.closed
    assert not b.closed
    assert result.a_to_b == 4


async def test_a_failing_write_aborts_both() -> None:
    a, b = MemoryEnd("a"), MemoryEnd("b")
    b.fail_writes = BrokenPipeError("gone")
    task = asyncio.ensure_future(splice(a, b))
    a.feed(b"x")
    result = await asyncio.wait_for(task, 5)
    assert isinstance(result.error, BrokenPipeError)
    assert a.aborted
    assert b.aborted


async def test_cancelling_aborts_both_sides() -> None:
    a, b = MemoryEnd("a"), MemoryEnd("b")
    task = asyncio.ensure_future(splice(a, b))
    a.feed(b"x")
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.aborted
    assert b.aborted


async def test_reads_are_bounded_by_the_chunk_size() -> None:
    a, b = MemoryEnd("a"), MemoryEnd("b")
    sizes: list[int] = []
    original = a.read

    async def read(max_bytes: int) -> bytes:
        sizes.append(max_bytes)
        return await original(max_bytes)

    a.read = read  # type: ignore[method-assign]
    task = asyncio.ensure_future(splice(a, b))
    a.feed(b"y" * CHUNK)
    a.feed_eof()
    b.feed_eof()
    await asyncio.wait_for(task, 5)
    assert sizes
    assert set(sizes) == {CHUNK}
    assert len(b.written) == CHUNK
