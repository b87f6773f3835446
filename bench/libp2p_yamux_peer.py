"""py-libp2p's yamux as an echo peer, for the comparison in yamux_throughput.py.

Runs with the interpreter of a separate virtualenv that has ``libp2p`` (never the project's):

    VENV/bin/python bench/libp2p_yamux_peer.py serve-echo  --listen unix:PATH
    VENV/bin/python bench/libp2p_yamux_peer.py echo-client --connect unix:PATH --streams N --bytes M

Same contract and output as ``python -m virga`` and the Go peer: each stream carries an
8-byte big-endian length and that many bytes, the server echoes exactly that many and
closes; the client prints ``ok streams=N bytes=M MB/s=X``.  py-libp2p's ``Yamux`` is driven
directly over a Unix socket (no security or multistream negotiation: both sides simply
start yamux), through a small buffered ``ISecureConn`` adapter around a trio stream.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import sys
import time

import trio
from libp2p.abc import ConnectionType, ISecureConn
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import Yamux

READ_SIZE = 256 * 1024
CHUNK = 256 * 1024


class UnixSecureConn(ISecureConn):
    """A plaintext ``ISecureConn`` over a trio stream, with a read buffer like asyncio's."""

    def __init__(self, stream: trio.abc.Stream, *, initiator: bool) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self.is_initiator = initiator

    async def read(self, n: int | None = None) -> bytes:
        if not self._buffer:
            data = await self._stream.receive_some(max(n or 0, READ_SIZE))
            if not data:
                return b""
            self._buffer += data
        if n is None or n < 0 or n >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
        else:
            out = bytes(self._buffer[:n])
            del self._buffer[:n]
        return out

    async def write(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def close(self) -> None:
        await self._stream.aclose()

    def get_remote_address(self) -> tuple[str, int] | None:
        return None

    def get_local_peer(self) -> ID:
        return ID(b"bench-local")

    def get_remote_peer(self) -> ID:
        return ID(b"bench-remote")

    def get_transport_addresses(self) -> list:  # type: ignore[type-arg]
        return []

    def get_connection_type(self) -> ConnectionType:
        return ConnectionType.DIRECT

    def get_local_private_key(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_remote_public_key(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def unix_path(address: str) -> str:
    if not address.startswith("unix:"):
        sys.exit(f"libp2p peer: only unix:PATH addresses, got {address!r}")
    return address[len("unix:") :]


async def read_exact(stream, n: int) -> bytes:  # type: ignore[no-untyped-def]
    parts = bytearray()
    while len(parts) < n:
        data = await stream.read(min(n - len(parts), CHUNK))
        if not data:
            raise EOFError(f"stream ended after {len(parts)} of {n} bytes")
        parts += data
    return bytes(parts)


async def echo(stream) -> None:  # type: ignore[no-untyped-def]
    n = int.from_bytes(await read_exact(stream, 8), "big")
    remaining = n
    while remaining:
        data = await stream.read(min(remaining, CHUNK))
        await stream.write(data)
        remaining -= len(data)
    await stream.close()


async def serve_connection(sock: trio.SocketStream) -> None:
    muxer = Yamux(UnixSecureConn(sock, initiator=False), ID(b"bench-remote"), is_initiator=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(muxer.start)
        await muxer.event_started.wait()
        try:
            while True:
                stream = await muxer.accept_stream()
                nursery.start_soon(echo, stream)
        except Exception:
            nursery.cancel_scope.cancel()


async def serve_echo(address: str) -> None:
    path = unix_path(address)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left by an earlier run
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(128)
    listener = trio.SocketListener(sock)
    print(f"listening {address}", flush=True)
    await trio.serve_listeners(serve_connection, [listener])


async def client_stream(muxer: Yamux, payload: bytes) -> None:
    stream = await muxer.open_stream()

    async def send() -> None:
        await stream.write(len(payload).to_bytes(8, "big"))
        for start in range(0, len(payload), CHUNK):
            await stream.write(payload[start : start + CHUNK])

    digest = hashlib.sha256()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        got = 0
        while got < len(payload):
            data = await stream.read(min(len(payload) - got, CHUNK))
            digest.update(data)
            got += len(data)
    if digest.digest() != hashlib.sha256(payload).digest():
        raise RuntimeError(f"stream {stream.stream_id}: echoed bytes differ")
    await stream.close()


async def echo_client(address: str, streams: int, nbytes: int) -> None:
    rng = random.Random()
    payloads = [rng.randbytes(nbytes) for _ in range(streams)]
    sock = await trio.open_unix_socket(unix_path(address))
    muxer = Yamux(UnixSecureConn(sock, initiator=True), ID(b"bench-local"), is_initiator=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(muxer.start)
        await muxer.event_started.wait()
        start = time.perf_counter()
        async with trio.open_nursery() as streams_nursery:
            for payload in payloads:
                streams_nursery.start_soon(client_stream, muxer, payload)
        elapsed = time.perf_counter() - start
        print(f"ok streams={streams} bytes={nbytes} MB/s={streams * nbytes / elapsed / 1e6:.1f}")
        await muxer.close()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="libp2p_yamux_peer")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve-echo")
    serve.add_argument("--listen", required=True)
    client = sub.add_parser("echo-client")
    client.add_argument("--connect", required=True)
    client.add_argument("--streams", type=int, default=1)
    client.add_argument("--bytes", type=int, default=1 << 20, dest="nbytes")
    args = parser.parse_args()
    if args.command == "serve-echo":
        trio.run(serve_echo, args.listen)
    else:
        trio.run(echo_client, args.connect, args.streams, args.nbytes)


if __name__ == "__main__":
    main()
