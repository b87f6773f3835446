"""The host side of the guest agent: a typed asyncio client.

    client = await wait_ready(vm.agent_address, timeout=60)     # while the VM boots
    async with client:
        result = await client.exec(["uname", "-r"])               # ExecResult
        async with client.exec_stream(["sh"], stdin=True, tty=True) as proc:
            await proc.send_stdin(b"ls\\n")
            async for chunk in proc: ...                          # Output(stream, data)
        await client.write_file("/etc/motd", b"hi\\n")
        data = await client.read_file("/etc/motd")

``AgentClient.connect`` opens a virga connection, runs the sync preamble, a yamux
client session and the ``info`` handshake (the protocol versions must match).  Every
request is one yamux stream (``cargobay.guest.protocol``).  Errors are
``cargobay.errors`` ones: ``AgentError`` (a ``GuestError`` with the agent's error
``kind`` and ``errno``; kind "connection" when the channel itself failed) and
``GuestTimeout``.  Waits are bounded: connecting and the small calls by their timeout,
long transfers and execs by the yamux keepalive (a guest that stops answering pings
closes the session, which fails every call on it).

Leaving an ``exec_stream`` block before the process exited resets its stream, and the
agent then kills the process group; so does cancelling any call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Final, Literal, Self

from cargobay.errors import CargoBayError, GuestError, GuestTimeout
from cargobay.guest.channel import host_sync, read_frame, write_frame
from cargobay.guest.protocol import (
    DATA_CHUNK,
    PROTOCOL_VERSION,
    ExecRequest,
    FileListRequest,
    FileReadRequest,
    FileStatRequest,
    FileWriteRequest,
    InfoRequest,
    Kind,
    Request,
    RequestError,
    ShutdownRequest,
    UnixConnectRequest,
    decode_json,
    encode_request,
)
from virga.connection import connect as virga_connect
from virga.connection.base import Connection
from virga.errors import VirgaError
from virga.yamux import Session, Stream, YamuxConfig

__all__ = [
    "CALL_TIMEOUT",
    "CONNECT_TIMEOUT",
    "AgentClient",
    "AgentError",
    "AgentInfo",
    "ExecProcess",
    "ExecResult",
    "ExitStatus",
    "FileStat",
    "Output",
    "wait_ready",
]

CONNECT_TIMEOUT: Final = 10.0
CALL_TIMEOUT: Final = 30.0
"""Default bound of the small calls (info, stat, list_dir, shutdown, an exec's start)."""
EXEC_TIMEOUT_MARGIN: Final = 30.0
"""An exec with a timeout must end within timeout + this, or ``GuestTimeout``."""

Bytes = bytes | bytearray | memoryview


class AgentError(GuestError):
    """The agent answered with an error, or the channel to it failed.

    ``kind`` is one of ``protocol.ERROR_KINDS``, or "connection" when the connection
    or session broke; ``errno`` is the guest's errno where there is one.
    """

    def __init__(self, message: str, *, kind: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.errno = errno


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentInfo:
    protocol: int
    agent_version: str
    hostname: str
    kernel: str
    uptime: float
    pid: int
    python: str

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AgentInfo:
        return cls(
            protocol=int(obj["protocol"]),
            agent_version=str(obj["agent_version"]),
            hostname=str(obj["hostname"]),
            kernel=str(obj["kernel"]),
            uptime=float(obj["uptime"]),
            pid=int(obj["pid"]),
            python=str(obj["python"]),
        )


@dataclass(frozen=True, slots=True)
class ExitStatus:
    exit_code: int | None
    """The exit code, or None when a signal ended the process."""
    signal: int | None
    timed_out: bool
    duration: float
    """Seconds from spawn to exit, measured in the guest."""

    @property
    def returncode(self) -> int:
        """A shell's ``$?``: the exit code, or 128 + the signal."""
        if self.exit_code is not None:
            return self.exit_code
        return 128 + (self.signal or 0)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ExitStatus:
        code, sig = obj.get("exit_code"), obj.get("signal")
        return cls(
            exit_code=None if code is None else int(code),
            signal=None if sig is None else int(sig),
            timed_out=bool(obj.get("timed_out", False)),
            duration=float(obj.get("duration", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class ExecResult:
    pid: int
    status: ExitStatus
    stdout: bytes
    stderr: bytes

    @property
    def exit_code(self) -> int | None:
        return self.status.exit_code

    @property
    def signal(self) -> int | None:
        return self.status.signal

    @property
    def timed_out(self) -> bool:
        return self.status.timed_out

    @property
    def duration(self) -> float:
        return self.status.duration

    @property
    def returncode(self) -> int:
        return self.status.returncode

    @property
    def ok(self) -> bool:
        return self.status.ok


@dataclass(frozen=True, slots=True)
class Output:
    """A chunk of an exec's output."""

    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True, slots=True)
class FileStat:
    name: str
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    uid: int
    gid: int
    target: str | None

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FileStat:
        kind = obj.get("type")
        target = obj.get("target")
        return cls(
            name=str(obj["name"]),
            path=str(obj["path"]),
            type=kind if kind in ("file", "dir", "symlink") else "other",
            size=int(obj["size"]),
            mode=int(obj["mode"]),
            mtime=float(obj["mtime"]),
            uid=int(obj["uid"]),
            gid=int(obj["gid"]),
            target=None if target is None else str(target),
        )


# -- errors -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Turn channel failures into ``AgentError``/``GuestTimeout`` naming ``what``."""
    try:
        yield
    except CargoBayError:
        raise
    except TimeoutError as err:  # asyncio.timeout and VirgaTimeoutError
        raise GuestTimeout(
            f"{what}: timed out ({err or 'no answer from the guest agent'})"
        ) from err
    except VirgaError as err:
        raise AgentError(
            f"{what}: the connection to the guest agent failed ({err})", kind="connection"
        ) from err
    except RequestError as err:  # a malformed frame from the agent
        raise AgentError(f"{what}: {err.message}", kind="protocol") from err


def _agent_error(payload: bytes, what: str) -> AgentError:
    try:
        obj = decode_json(payload)
        message = str(obj.get("error", "unknown error"))
        kind = str(obj.get("kind", "internal"))
        number = obj.get("errno")
    except ValueError:
        message, kind, number = f"unreadable error {payload[:200]!r}", "protocol", None
    return AgentError(
        f"{what}: {message}", kind=kind, errno=number if isinstance(number, int) else None
    )


def _final(frame: tuple[bytes, bytes] | None, what: str) -> dict[str, Any]:
    """The RESULT of a request (or raise its ERROR)."""
    if frame is None:
        raise AgentError(f"{what}: the agent ended the request without an answer", kind="protocol")
    kind, payload = frame
    if kind == Kind.RESULT:
        try:
            return decode_json(payload)
        except ValueError as err:
            raise AgentError(f"{what}: malformed result ({err})", kind="protocol") from err
    if kind == Kind.ERROR:
        raise _agent_error(payload, what)
    raise AgentError(f"{what}: unexpected frame {kind!r}", kind="protocol")


async def _release(stream: Stream, complete: bool) -> None:
    """After a request: close the stream, or reset it if the request did not complete."""
    with contextlib.suppress(VirgaError):
        if complete:
            await stream.close()
        else:
            await stream.reset()


def _chunks(data: Bytes) -> Iterator[bytes]:
    view = memoryview(data).cast("B")
    for start in range(0, len(view), DATA_CHUNK):
        yield bytes(view[start : start + DATA_CHUNK])


# -- exec -------------------------------------------------------------------------------------


StdinSource = Bytes | AsyncIterable[bytes]


class ExecProcess:
    """A process started by ``AgentClient.exec_stream``; iterate it for its output."""

    def __init__(self, stream: Stream, pid: int, argv0: str) -> None:
        self._stream = stream
        self.pid = pid
        self._what = f"exec {argv0!r}" + (f" (pid {pid})" if pid >= 0 else "")
        self.status: ExitStatus | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._feed_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<ExecProcess {self.pid} {self.status or 'running'}>"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Output:
        if self.status is not None:
            raise StopAsyncIteration
        with _translate(self._what):
            frame = await read_frame(self._stream)
        if frame is None:
            raise AgentError(
                f"{self._what}: the stream ended without an exit status", kind="protocol"
            )
        kind, payload = frame
        if kind == Kind.STDOUT:
            return Output("stdout", payload)
        if kind == Kind.STDERR:
            return Output("stderr", payload)
        if kind == Kind.EXIT:
            try:
                result = decode_json(payload)
                self.status = ExitStatus.from_json(result)
                if self.pid < 0:
                    self.pid = int(result.get("pid", -1))
            except (ValueError, TypeError) as err:
                raise AgentError(f"{self._what}: malformed EXIT ({err})", kind="protocol") from err
            self._stop_feeding()
            raise StopAsyncIteration
        if kind == Kind.ERROR:
            raise _agent_error(payload, self._what)
        raise AgentError(f"{self._what}: unexpected frame {kind!r}", kind="protocol")

    async def _send(self, kind: bytes, payload: bytes = b"") -> None:
        with _translate(self._what):
            await write_frame(self._stream, kind, payload)

    async def send_stdin(self, data: Bytes) -> None:
        """Send bytes to the process's stdin (waits while the guest is not reading)."""
        for chunk in _chunks(data):
            await self._send(Kind.STDIN, chunk)

    async def close_stdin(self) -> None:
        """End of input (with a TTY: the terminal's EOF character)."""
        await self._send(Kind.END)

    async def signal(self, signum: int, *, group: bool = False) -> None:
        """Send ``signum`` to the process (``group``: to its whole process group)."""
        await self._send(Kind.SIGNAL, json.dumps({"signal": int(signum), "group": group}).encode())

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the TTY; the process gets SIGWINCH."""
        await self._send(Kind.RESIZE, json.dumps({"rows": rows, "cols": cols}).encode())

    async def wait(self) -> ExitStatus:
        """Wait for the exit; output not read yet is discarded."""
        async for _ in self:
            pass
        assert self.status is not None
        if self._feed_error is not None:
            raise self._feed_error
        return self.status

    # -- stdin feeding (exec_stream with bytes or an async iterable) ---------------------------

    def _start_feeding(self, source: StdinSource) -> None:
        self._feeder = asyncio.get_running_loop().create_task(self._feed(source))

    async def _feed(self, source: StdinSource) -> None:
        try:
            if isinstance(source, bytes | bytearray | memoryview):
                await self.send_stdin(source)
            else:
                async for chunk in source:
                    await self.send_stdin(chunk)
            await self.close_stdin()
        except AgentError:
            pass  # the stream is gone: the exit (or its failure) is reported by the reader
        except Exception as err:
            self._feed_error = err

    def _stop_feeding(self) -> None:
        if self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()

    async def _finish(self) -> None:
        if self._feeder is not None:
            self._stop_feeding()
            await asyncio.wait([self._feeder])  # never raises its outcome, keeps ours
        await _release(self._stream, self.status is not None)


def _exec_request(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    stdin: object,
    tty: bool,
    timeout: float | None,
    rows: int,
    cols: int,
    *,
    started: bool,
) -> ExecRequest:
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty sequence of strings")
    return ExecRequest(
        argv=tuple(argv),
        env=dict(env) if env else None,
        cwd=cwd,
        stdin=stdin is not False,
        tty=tty,
        timeout=timeout,
        rows=rows,
        cols=cols,
        started=started,
    )


# -- the client ------------------------------------------------------------------------------


class AgentClient:
    """A connection to one guest agent.  Create with ``connect``/``wait_ready``."""

    def __init__(self, session: Session, description: str, info: AgentInfo | None = None) -> None:
        self._session = session
        self.description = description
        self._info = info

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AgentClient {self.description} {state}>"

    @property
    def agent_info(self) -> AgentInfo:
        """What the agent said in the handshake."""
        assert self._info is not None
        return self._info

    @property
    def closed(self) -> bool:
        return self._session.closed

    @property
    def session(self) -> Session:
        """The yamux session, for requests this class has no method for."""
        return self._session

    # -- connecting ----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        address: str,
        *,
        timeout: float = CONNECT_TIMEOUT,
        client_name: str = "cargobay",
        protocol_version: int = PROTOCOL_VERSION,
    ) -> AgentClient:
        """Connect to the agent at a virga ``address`` within ``timeout`` seconds.

        ``protocol_version`` is what this side claims (only tests change it).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with _translate(f"connecting to the guest agent at {address}"):
            conn = await virga_connect(address, timeout=timeout)
        return await cls.over(
            conn,
            timeout=max(0.0, deadline - loop.time()),
            client_name=client_name,
            protocol_version=protocol_version,
        )

    @classmethod
    async def over(
        cls,
        conn: Connection,
        *,
        timeout: float = CONNECT_TIMEOUT,
        nonce: bytes | None = None,
        client_name: str = "cargobay",
        protocol_version: int = PROTOCOL_VERSION,
    ) -> AgentClient:
        """Run the handshake on an open connection (which the client then owns)."""
        what = f"connecting to the guest agent at {conn.description}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        session: Session | None = None
        try:
            with _translate(what):
                synced, version = await host_sync(conn, timeout=timeout, nonce=nonce)
            if version != protocol_version:
                raise AgentError(
                    f"{what}: the agent speaks protocol {version}, this host {protocol_version}"
                    ": rebuild the guest image (cargobay image build) or update CargoBay",
                    kind="protocol",
                )
            session = Session.client(synced, YamuxConfig())
            client = cls(session, conn.description)
            result = await client._call(
                InfoRequest(protocol=protocol_version, client=client_name),
                what,
                max(0.001, deadline - loop.time()),
            )
            client._info = AgentInfo.from_json(result)
            return client
        except BaseException:
            with contextlib.suppress(VirgaError, OSError):
                if session is not None:
                    await session.close()
                else:
                    await conn.close()
            raise

    async def close(self) -> None:
        with contextlib.suppress(VirgaError):
            await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing --------------------------------------------------------------------------------

    async def _open(self, request: Request) -> Stream:
        stream = await self._session.open_stream()
        await stream.write(encode_request(request))
        return stream

    async def _call(self, request: Request, what: str, timeout: float | None) -> dict[str, Any]:
        """A request answered by a single RESULT."""
        with _translate(what):
            async with asyncio.timeout(timeout):
                stream = await self._open(request)
                complete = False
                try:
                    result = _final(await read_frame(stream), what)
                    complete = True
                    return result
                finally:
                    await _release(stream, complete)

    # -- operations ----------------------------------------------------------------------------

    async def info(self, *, timeout: float | None = CALL_TIMEOUT) -> AgentInfo:
        result = await self._call(InfoRequest(client="cargobay"), "info", timeout)
        self._info = AgentInfo.from_json(result)
        return self._info

    @contextlib.asynccontextmanager
    async def exec_stream(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bool | StdinSource = False,
        tty: bool = False,
        timeout: float | None = None,
        rows: int = 24,
        cols: int = 80,
        start_timeout: float | None = CALL_TIMEOUT,
    ) -> AsyncIterator[ExecProcess]:
        """Start ``argv`` and yield the running ``ExecProcess`` (its pid known).

        ``stdin``: False (the process reads /dev/null), True (send with
        ``proc.send_stdin``/``close_stdin``), or bytes / an async iterable of bytes that
        is sent, then closed.  ``timeout``: the guest kills the process group after that
        many seconds (``status.timed_out``).  ``start_timeout`` bounds the wait for the
        agent to start the process.
        """
        request = _exec_request(argv, env, cwd, stdin, tty, timeout, rows, cols, started=True)
        proc = await self._start(request, start_timeout)
        if stdin is not False and stdin is not True:
            proc._start_feeding(stdin)
        try:
            yield proc
        finally:
            await proc._finish()

    async def _start(self, request: ExecRequest, start_timeout: float | None) -> ExecProcess:
        """Send an exec request; wait for STARTED if it asks for one."""
        what = f"exec {request.argv[0]!r}"
        with _translate(what):
            async with asyncio.timeout(start_timeout):
                stream = await self._open(request)
                if not request.started:
                    return ExecProcess(stream, -1, request.argv[0])
                try:
                    frame = await read_frame(stream)
                except BaseException:
                    await _release(stream, False)
                    raise
        if frame is None or frame[0] != Kind.STARTED:
            try:
                _final(frame, what)  # raises the agent's ERROR
                raise AgentError(f"{what}: the agent did not start it", kind="protocol")
            finally:
                await _release(stream, True)
        try:
            pid = int(decode_json(frame[1])["pid"])
        except (ValueError, KeyError, TypeError) as err:
            await _release(stream, False)
            raise AgentError(f"{what}: malformed STARTED ({err})", kind="protocol") from err
        return ExecProcess(stream, pid, request.argv[0])

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: StdinSource | None = None,
        tty: bool = False,
        timeout: float | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> ExecResult:
        """Run ``argv`` to completion and collect its output.

        Bounded by ``timeout`` + ``EXEC_TIMEOUT_MARGIN`` when a timeout is given
        (``GuestTimeout`` past that); a timed-out process is a result, not an error.
        """
        # No STARTED: the pid comes with EXIT, and the guest sends one message less.
        request = _exec_request(
            argv, env, cwd, stdin is not None, tty, timeout, rows, cols, started=False
        )
        out = bytearray()
        err = bytearray()
        limit = None if timeout is None else timeout + EXEC_TIMEOUT_MARGIN
        with _translate(f"exec {request.argv[0]!r}"):
            async with asyncio.timeout(limit):
                proc = await self._start(request, None)
                if stdin is not None:
                    proc._start_feeding(stdin)
                try:
                    async for chunk in proc:
                        (out if chunk.stream == "stdout" else err).extend(chunk.data)
                    status = await proc.wait()
                finally:
                    await proc._finish()
        return ExecResult(pid=proc.pid, status=status, stdout=bytes(out), stderr=bytes(err))

    async def read_file_chunks(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The contents of ``path`` as they arrive (an async generator)."""
        what = f"reading {path}"
        with _translate(what):
            stream = await self._open(FileReadRequest(path=path, offset=offset, length=length))
        complete = False
        try:
            while True:
                with _translate(what):
                    frame = await read_frame(stream)
                if frame is not None and frame[0] == Kind.DATA:
                    yield frame[1]
                    continue
                _final(frame, what)
                complete = True
                return
        finally:
            await _release(stream, complete)

    async def read_file(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        parts = [chunk async for chunk in self.read_file_chunks(path, offset=offset, length=length)]
        return b"".join(parts)

    async def read_file_to(self, path: str, file: IO[bytes]) -> int:
        """Copy ``path`` into the binary file object ``file``; returns the byte count."""
        total = 0
        async for chunk in self.read_file_chunks(path):
            file.write(chunk)
            total += len(chunk)
        return total

    async def write_file(
        self,
        path: str,
        data: Bytes | AsyncIterable[bytes] | IO[bytes],
        *,
        mode: int | None = None,
        mkdirs: bool = False,
        append: bool = False,
    ) -> int:
        """Write ``path`` atomically (unless ``append``); returns the bytes written."""
        what = f"writing {path}"
        request = FileWriteRequest(path=path, mode=mode, append=append, mkdirs=mkdirs)
        loop = asyncio.get_running_loop()
        with _translate(what):
            stream = await self._open(request)
        sender = loop.create_task(self._send_data(stream, data))
        answer = loop.create_task(read_frame(stream))
        complete = False
        try:
            with _translate(what):
                await asyncio.wait({sender, answer}, return_when=asyncio.FIRST_COMPLETED)
                if not answer.done():
                    await sender  # raises if sending failed
                frame = await answer  # an early answer is an ERROR: stop sending
            result = _final(frame, what)
            complete = True
            return int(result.get("written", 0))
        finally:
            for task in (sender, answer):
                task.cancel()
            await asyncio.gather(sender, answer, return_exceptions=True)
            await _release(stream, complete)

    @staticmethod
    async def _send_data(stream: Stream, data: Bytes | AsyncIterable[bytes] | IO[bytes]) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            for chunk in _chunks(data):
                await write_frame(stream, Kind.DATA, chunk)
        elif isinstance(data, AsyncIterable):
            async for piece in data:
                for chunk in _chunks(piece):
                    await write_frame(stream, Kind.DATA, chunk)
        else:
            while piece := data.read(DATA_CHUNK):
                await write_frame(stream, Kind.DATA, piece)
        await write_frame(stream, Kind.END)

    async def stat(self, path: str, *, timeout: float | None = CALL_TIMEOUT) -> FileStat:
        return FileStat.from_json(
            await self._call(FileStatRequest(path=path), f"stat {path}", timeout)
        )

    async def list_dir(self, path: str, *, timeout: float | None = CALL_TIMEOUT) -> list[FileStat]:
        result = await self._call(FileListRequest(path=path), f"listing {path}", timeout)
        return [FileStat.from_json(e) for e in result.get("entries", [])]

    async def connect_unix(self, path: str, *, timeout: float | None = CALL_TIMEOUT) -> Stream:
        """A yamux stream connected to the Unix socket ``path`` in the guest: what is
        written to it reaches the socket, what the socket sends is read from it, and a
        ``close()`` is a half-close (``cargobay.guest.splice`` moves bytes over it).

        ``AgentError`` with the agent's kind when the guest cannot connect ("not_found":
        no such socket), or kind "protocol" from an agent older than 0.2.0."""
        what = f"connecting to {path} in the guest"
        with _translate(what):
            async with asyncio.timeout(timeout):
                stream = await self._open(UnixConnectRequest(path=path))
                complete = False
                try:
                    _final(await read_frame(stream), what)
                    complete = True
                    return stream
                finally:
                    if not complete:
                        await _release(stream, False)

    async def shutdown(self, *, reboot: bool = False, timeout: float | None = CALL_TIMEOUT) -> None:
        """Ask the guest to power off (or reboot); the client is closed afterwards."""
        try:
            await self._call(ShutdownRequest(reboot=reboot), "shutdown", timeout)
        finally:
            await self.close()


async def wait_ready(
    address: str,
    timeout: float,
    *,
    interval: float = 0.25,
    client_name: str = "cargobay",
) -> AgentClient:
    """Connect to the agent at ``address``, retrying until it answers or ``timeout`` passes.

    Made for a booting VM: the chardev socket exists at once, but the agent answers only
    once the guest is up.  A protocol mismatch is raised at once (retrying cannot fix
    it); anything else is retried every ``interval`` seconds.  ``GuestTimeout`` names
    the last failure.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exception | None = None
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise GuestTimeout(
                f"the guest agent at {address} did not answer within {timeout}s"
                + (f" (last error: {last})" if last else "")
            )
        try:
            return await AgentClient.connect(address, timeout=remaining, client_name=client_name)
        except GuestTimeout as err:
            last = err
        except AgentError as err:
            if err.kind == "protocol":
                raise
            last = err
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
