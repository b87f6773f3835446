"""virga's small command line, for people and for interop peers (stdlib argparse only).

    python -m virga serve-echo  --listen ADDR  [--protocol yamux|xtransport]
    python -m virga echo-client --connect ADDR --streams N --bytes M [--protocol ...]
    python -m virga demo [--json]

The echo contract is shared with the Go peer (tests/peers/goyamux): for each stream the
opener sends an 8-byte big-endian length N and N bytes; the acceptor echoes exactly N bytes
back and closes the stream.  ``echo-client`` opens its N streams at once, compares SHA-256
of what it sent and what came back, and prints ``ok streams=N bytes=M MB/s=X`` (MB/s = all
bytes echoed / elapsed seconds / 1e6).  With ``--protocol xtransport`` there are no streams:
the client opens N connections at once and each sends one M-byte message, which the server
echoes back.

Servers print machine-readable lines on stdout (``listening ADDR``, ``echoed id=N bytes=M``,
``stream-error id=N err=...``).  Expected failures print one line ``virga: error: ...`` on
stderr and exit 1 (2 for bad usage); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from virga.address import parse_address
from virga.connection import Connection, HybridVsockMux, connect, listen
from virga.errors import ConfigError, StreamClosedError, VirgaError, VirgaTimeoutError
from virga.xtransport import XTransportChannel, XTransportConfig
from virga.yamux import Session, Stream, YamuxConfig

__all__ = ["EchoResult", "echo_client", "main", "serve_echo"]

LENGTH_SIZE = 8
_CHUNK = 256 * 1024
PROTOCOLS = ("yamux", "xtransport")


class EchoMismatch(VirgaError):
    """The bytes echoed back differ from the bytes sent."""


@dataclass(frozen=True, slots=True)
class EchoResult:
    streams: int
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.streams * self.nbytes / max(self.seconds, 1e-9) / 1e6

    def line(self) -> str:
        return f"ok streams={self.streams} bytes={self.nbytes} MB/s={self.mb_per_s:.1f}"


def say(line: str) -> None:
    """One machine-readable stdout line, flushed at once (peers wait for these lines)."""
    print(line, flush=True)


# --- yamux echo -------------------------------------------------------------------------


async def echo_stream(stream: Stream) -> int:
    """Serve one accepted stream: read the length, echo exactly that many bytes, FIN."""
    try:
        n = int.from_bytes(await stream.read_exact(LENGTH_SIZE), "big")
        remaining = n
        while remaining:
            chunk = await stream.read(min(remaining, _CHUNK))
            if not chunk:
                raise StreamClosedError(
                    f"stream {stream.stream_id} ended after {n - remaining} of {n} bytes"
                )
            await stream.write(chunk)
            remaining -= len(chunk)
    finally:
        with contextlib.suppress(VirgaError):
            await stream.close()
    return n


async def _echo_and_report(stream: Stream, report: bool) -> None:
    try:
        n = await echo_stream(stream)
    except VirgaError as err:
        if report:
            say(f"stream-error id={stream.stream_id} err={_quote(err)}")
    else:
        if report:
            say(f"echoed id={stream.stream_id} bytes={n}")


async def serve_yamux_connection(
    conn: Connection, config: YamuxConfig, *, report: bool = True
) -> int:
    """Run a yamux server session on ``conn`` and echo every stream until the peer leaves.

    With ``report``, print a line per stream (``echoed ...`` / ``stream-error ...``).
    Returns the number of streams accepted.
    """
    accepted = 0
    tasks: set[asyncio.Task[None]] = set()
    try:
        async with Session.server(conn, config) as session:
            while True:
                try:
                    stream = await session.accept_stream()
                except VirgaError:
                    return accepted  # the session ended (peer closed, GoAway, connection lost)
                accepted += 1
                task = asyncio.create_task(_echo_and_report(stream, report))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()


async def _client_stream(session: Session, payload: bytes) -> None:
    stream = await session.open_stream()
    try:

        async def send() -> None:
            await stream.write(len(payload).to_bytes(LENGTH_SIZE, "big"))
            await stream.write(payload)

        sender = asyncio.create_task(send())
        try:
            digest = hashlib.sha256()
            got = 0
            while got < len(payload):
                chunk = await stream.read(min(len(payload) - got, _CHUNK))
                if not chunk:
                    raise StreamClosedError(
                        f"stream {stream.stream_id}: echo ended after {got} of {len(payload)} bytes"
                    )
                digest.update(chunk)
                got += len(chunk)
            await sender
        finally:
            sender.cancel()
        if digest.digest() != hashlib.sha256(payload).digest():
            raise EchoMismatch(
                f"stream {stream.stream_id}: echoed bytes differ from the bytes sent"
            )
    finally:
        with contextlib.suppress(VirgaError):
            await stream.close()


async def yamux_echo(session: Session, payloads: Sequence[bytes]) -> float:
    """Echo every payload on its own stream, all at once; return the seconds it took."""
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_client_stream(session, p) for p in payloads), return_exceptions=True
    )
    elapsed = time.perf_counter() - start
    _raise_first(results, len(payloads), "streams")
    return elapsed


def _raise_first(results: Sequence[object], total: int, what: str) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    if not errors:
        return
    first = errors[0]
    if not isinstance(first, Exception):
        raise first  # CancelledError and friends pass through untouched
    if isinstance(first, VirgaError):
        raise type(first)(f"{len(errors)} of {total} {what} failed; first: {first}") from first
    raise first


def make_payloads(streams: int, nbytes: int) -> list[bytes]:
    rng = random.Random()
    return [rng.randbytes(nbytes) for _ in range(streams)]


# --- xtransport echo --------------------------------------------------------------------


async def serve_xtransport_connection(conn: Connection, config: XTransportConfig) -> None:
    """Echo every message received on ``conn`` until the peer leaves."""
    channel = XTransportChannel(conn, config)
    n = 0
    try:
        while True:
            try:
                message = await channel.recv()
            except VirgaError:
                return
            await channel.send(message)
            n += 1
            say(f"echoed message={n} bytes={len(message)}")
    finally:
        await conn.close()


async def _xtransport_one(
    address: str, payload: bytes, config: XTransportConfig, connect_timeout: float
) -> None:
    conn = await connect(address, timeout=connect_timeout)
    try:
        channel = XTransportChannel(conn, config)
        await channel.send(payload)
        echoed = await channel.recv()
        if hashlib.sha256(echoed).digest() != hashlib.sha256(payload).digest():
            raise EchoMismatch(
                f"xtransport: echoed message of {len(echoed)} bytes differs from the "
                f"{len(payload)} bytes sent"
            )
    finally:
        await conn.close()


# --- commands -----------------------------------------------------------------------------


async def serve_echo(
    address: str,
    *,
    protocol: str = "yamux",
    config: YamuxConfig | None = None,
    xconfig: XTransportConfig | None = None,
) -> None:
    """Listen on ``address`` and echo until SIGINT/SIGTERM."""
    yamux_config = config or YamuxConfig()
    xtransport_config = xconfig or XTransportConfig()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: set[asyncio.Task[Any]] = set()

    async def accept_loop() -> None:
        while True:
            conn = await listener.accept()
            task: asyncio.Task[Any]
            if protocol == "xtransport":
                task = asyncio.create_task(serve_xtransport_connection(conn, xtransport_config))
            else:
                task = asyncio.create_task(serve_yamux_connection(conn, yamux_config))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async with await listen(address) as listener:
        say(f"listening {address}")
        acceptor = asyncio.create_task(accept_loop())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({acceptor, stopper}, return_when=asyncio.FIRST_COMPLETED)
        failed = acceptor.done() and not stopper.done()
        for task in (acceptor, stopper, *tasks):
            task.cancel()
        await asyncio.gather(stopper, *tasks, return_exceptions=True)
        if failed:
            await acceptor  # the listener broke: raise its error


async def echo_client(
    address: str,
    *,
    streams: int,
    nbytes: int,
    protocol: str = "yamux",
    config: YamuxConfig | None = None,
    xconfig: XTransportConfig | None = None,
    connect_timeout: float = 10.0,
) -> EchoResult:
    """Echo ``streams`` payloads of ``nbytes`` random bytes through the server at ``address``.

    yamux: one session, a stream per payload, all at once.  xtransport: a connection per
    payload, all at once, each sending its payload as one message.
    """
    payloads = make_payloads(streams, nbytes)
    if protocol == "xtransport":
        xtransport_config = xconfig or XTransportConfig()
        start = time.perf_counter()
        results = await asyncio.gather(
            *(_xtransport_one(address, p, xtransport_config, connect_timeout) for p in payloads),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - start
        _raise_first(results, streams, "connections")
        return EchoResult(streams, nbytes, elapsed)
    conn = await connect(address, timeout=connect_timeout)
    async with Session.client(conn, config or YamuxConfig()) as session:
        elapsed = await yamux_echo(session, payloads)
    return EchoResult(streams, nbytes, elapsed)


# --- demo ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoStep:
    name: str
    ms: float
    detail: str


async def run_demo(*, as_json: bool, streams: int, nbytes: int, port: int) -> int:
    """A yamux echo through a hybrid-vsock Unix socket, the Firecracker host protocol.

    The guest side is a ``HybridVsockMux`` (the VMM's Unix socket that answers
    ``CONNECT <port>`` and hands the connection to the guest's listener on that port) with
    a yamux echo server on ``port``; the host connects to ``hvsock:UDS:PORT`` like any
    Firecracker host would.
    """
    config = YamuxConfig()
    steps: list[DemoStep] = []
    clock = time.perf_counter()
    begin = clock

    def step(name: str, detail: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps.append(DemoStep(name, (now - clock) * 1000, detail))
        clock = now
        if not as_json:
            say(f"  [{steps[-1].ms:8.1f} ms] {name}: {detail}")

    if not as_json:
        say("virga demo: a yamux echo through a hybrid-vsock Unix socket (Firecracker protocol)")
    with tempfile.TemporaryDirectory(prefix="virga-demo-") as tmp:
        uds = os.path.join(tmp, "vsock.sock")
        address = f"hvsock:{uds}:{port}"

        guest_streams: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def guest_handler(conn: Connection) -> None:
            n = await serve_yamux_connection(conn, config, report=False)
            await conn.close()  # before the mux closes, which would cancel its own close
            if not guest_streams.done():
                guest_streams.set_result(n)

        async with HybridVsockMux(uds) as mux:
            mux.register(port, guest_handler)
            step("guest", f"hybrid-vsock socket {uds}, yamux echo server on vsock port {port}")
            conn = await connect(address, timeout=10.0)
            host_port = getattr(conn, "local_port", None)
            step("host", f"connected to {address} (CONNECT {port} -> OK {host_port})")
            async with Session.client(conn, config) as session:
                rtt = await session.ping()
                step("yamux", f"client session up, ping round trip {rtt * 1000:.2f} ms")
                payloads = make_payloads(streams, nbytes)
                elapsed = await yamux_echo(session, payloads)
                rate = streams * nbytes / max(elapsed, 1e-9) / 1e6
                step(
                    "echo",
                    f"{streams} streams x {nbytes} bytes echoed at once, SHA-256 verified, "
                    f"{rate:.1f} MB/s",
                )
                await session.close()
            async with asyncio.timeout(5.0):
                served = await guest_streams  # the guest saw the GoAway and ended its session
            step(
                "close",
                f"GoAway(normal) sent, session and connection closed; "
                f"the guest served {served} streams and ended its session",
            )
    total_ms = (time.perf_counter() - begin) * 1000
    if as_json:
        say(
            json.dumps(
                {
                    "ok": True,
                    "transport": "hvsock",
                    "protocol": "yamux",
                    "address": address,
                    "streams": streams,
                    "bytes": nbytes,
                    "mb_per_s": round(rate, 1),
                    "rtt_ms": round(rtt * 1000, 3),
                    "total_ms": round(total_ms, 1),
                    "steps": [
                        {"name": s.name, "ms": round(s.ms, 2), "detail": s.detail} for s in steps
                    ],
                },
                indent=2,
            )
        )
    else:
        say(f"ok demo finished in {total_ms:.0f} ms")
    return 0


# --- argument parsing and error reporting -------------------------------------------------


def _quote(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> int:
    """A byte count: 1048576, 64M, 256K, 1G (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    scale = units.get(text[-1:].upper(), 1)
    number = text[:-1] if scale != 1 else text
    try:
        value = int(number, 0) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a byte count such as 1048576, 256K or 64M, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virga",
        description="virga transport: yamux/xtransport echo peers and a hybrid-vsock demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def protocol_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--protocol", choices=PROTOCOLS, default="yamux")
        p.add_argument(
            "--frame-size",
            type=_size,
            default=XTransportConfig().frame_size,
            help="xtransport frame size, header included",
        )
        p.add_argument(
            "--wait-for-ack", action="store_true", help="xtransport: acknowledge every frame"
        )

    serve = sub.add_parser("serve-echo", help="echo every stream (or message) received")
    serve.add_argument(
        "--listen", required=True, metavar="ADDR", help="unix:PATH, tcp:HOST:PORT, ..."
    )
    protocol_arg(serve)

    client = sub.add_parser("echo-client", help="echo N streams of M bytes through a server")
    client.add_argument("--connect", required=True, metavar="ADDR")
    client.add_argument("--streams", type=_positive, default=1, metavar="N")
    client.add_argument("--bytes", type=_size, default=1 << 20, metavar="M", dest="nbytes")
    client.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    protocol_arg(client)

    demo = sub.add_parser("demo", help="a yamux echo through a hybrid-vsock Unix socket")
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.add_argument("--streams", type=_positive, default=4, metavar="N")
    demo.add_argument("--bytes", type=_size, default=1 << 20, metavar="M", dest="nbytes")
    demo.add_argument("--port", type=_positive, default=1024, help="guest vsock port")
    return parser


def _xtransport_config(args: argparse.Namespace) -> XTransportConfig:
    return XTransportConfig(frame_size=args.frame_size, wait_for_ack=args.wait_for_ack)


def _fail(message: str, code: int) -> NoReturn:
    print(f"virga: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _run(coro_fn: Callable[[], Awaitable[int]]) -> int:
    async def wrapped() -> int:
        return await coro_fn()

    try:
        return asyncio.run(wrapped())
    except ConfigError as err:
        _fail(str(err), 2)
    except TimeoutError as err:
        message = str(err) if isinstance(err, VirgaTimeoutError) else "timed out"
        _fail(message, 1)
    except VirgaError as err:
        _fail(str(err), 1)
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 failure, 2 bad usage)."""
    args = build_parser().parse_args(argv)

    if args.command == "serve-echo":

        async def run_serve() -> int:
            parse_address(args.listen)
            await serve_echo(args.listen, protocol=args.protocol, xconfig=_xtransport_config(args))
            return 0

        return _run(run_serve)

    if args.command == "echo-client":

        async def run_client() -> int:
            parse_address(args.connect)
            xconfig = _xtransport_config(args)
            try:
                async with asyncio.timeout(args.timeout):
                    result = await echo_client(
                        args.connect,
                        streams=args.streams,
                        nbytes=args.nbytes,
                        protocol=args.protocol,
                        xconfig=xconfig,
                    )
            except TimeoutError as err:
                if isinstance(err, VirgaTimeoutError):
                    raise
                raise VirgaTimeoutError(
                    f"echo through {args.connect} did not finish within {args.timeout}s"
                ) from err
            say(result.line())
            return 0

        return _run(run_client)

    async def run_demo_command() -> int:
        return await run_demo(
            as_json=args.json, streams=args.streams, nbytes=args.nbytes, port=args.port
        )

    return _run(run_demo_command)
