"""asyncio adapter for the Spice cores: channels, a VM's set of channels, and ``probe``.

Spice gives every channel its own TCP (or TLS) connection.  ``SpiceChannel`` owns one:
it connects, runs the ``SpiceLink`` state machine, then a reader task feeds
``SpiceChannelProtocol``, writes its housekeeping answers (ACK, PONG) and queues the
decoded events.  Channels live and die independently: a failed display channel does not
take the inputs channel with it.

``SpiceVmConnection`` is the seed's per-VM object: it links the main channel first (which
yields the session id and MAIN_INIT), asks for CHANNELS_LIST, then links other channels on
demand with that session id as their connection id.  ``probe`` does all of that once and
reports what the server offers and how long each step took.

    async with SpiceVmConnection("127.0.0.1", 5930, password="pw") as vm:
        await vm.type_text("root\\n")
        await vm.mouse_position(100, 200)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

from cargobay.vmcontrol.spice import messages as m
from cargobay.vmcontrol.spice.channel import ChannelState, SpiceChannelProtocol
from cargobay.vmcontrol.spice.constants import ChannelType, InputsCap, MainCap, MouseButton
from cargobay.vmcontrol.spice.errors import (
    SpiceConnectionError,
    SpiceError,
    SpiceUsageError,
)
from cargobay.vmcontrol.spice.keys import combo_strokes, text_strokes
from cargobay.vmcontrol.spice.link import NEED_DATA, Linked, LinkReplyReceived, SpiceLink

__all__ = [
    "ChannelRunState",
    "ProbeResult",
    "SpiceChannel",
    "SpiceVmConnection",
    "probe",
    "tls_context",
]

E = TypeVar("E")
_READ_SIZE = 256 * 1024
_QUEUE_LIMIT = 1024  # events kept per channel; the oldest are dropped beyond this
_WORKER_CHANNELS = frozenset({ChannelType.DISPLAY, ChannelType.CURSOR})
_CHANNEL_CAPS: dict[ChannelType, frozenset[int]] = {
    ChannelType.MAIN: frozenset({MainCap.NAME_AND_UUID, MainCap.AGENT_CONNECTED_TOKENS}),
    ChannelType.INPUTS: frozenset({InputsCap.KEY_SCANCODE}),
}


def tls_context(ca_file: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A client context for a Spice ``tls-port``: the CA file's certificates (or the system
    store) verify the server, and the certificate must name the host we connect to."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ChannelRunState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LINKING = "linking"
    READY = "ready"
    CLOSED = "closed"
    FAILED = "failed"


class SpiceChannel:
    """One Spice channel on its own connection, with its own lifecycle."""

    def __init__(
        self,
        host: str,
        port: int,
        channel_type: ChannelType,
        channel_id: int = 0,
        *,
        password: str = "",
        connection_id: int = 0,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.channel_type, self.channel_id = ChannelType(channel_type), channel_id
        self.state = ChannelRunState.IDLE
        self.error: BaseException | None = None
        self.connect_seconds: float | None = None
        self.link_seconds: float | None = None  # link start to linked (display/cursor: attached)
        self._link_started = 0.0
        self.dropped_events = 0
        self.protocol: SpiceChannelProtocol | None = None
        self.server_channel_caps: frozenset[int] = frozenset()
        self._link = SpiceLink(
            self.channel_type,
            channel_id,
            connection_id=connection_id,
            password=password,
            channel_caps=_CHANNEL_CAPS.get(self.channel_type, frozenset()),
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._first_message = asyncio.Event()

    @property
    def name(self) -> str:
        return f"{self.channel_type.name.lower()}:{self.channel_id}"

    def _where(self) -> str:
        scheme = "spice+tls" if self.tls else "spice"
        return f"{scheme}://{self.host}:{self.port} channel {self.name}"

    async def open(self) -> None:
        """Connect and link; afterwards the channel is READY and its reader runs."""
        if self.state is not ChannelRunState.IDLE:
            raise SpiceUsageError(f"{self._where()} is {self.state.value}; open it only once")
        self.state = ChannelRunState.CONNECTING
        try:
            await self._connect()
            self.state = ChannelRunState.LINKING
            await asyncio.wait_for(self._run_link(), self.timeout)
        except TimeoutError as err:
            await self._abort()
            raise SpiceConnectionError(
                f"{self._where()}: no answer within {self.timeout:.1f} s during "
                f"{self.state.value}; is this a Spice port?"
            ) from err
        except BaseException:
            await self._abort()
            raise
        self.state = ChannelRunState.READY
        self._task = asyncio.create_task(self._read_loop(), name=f"spice-{self.name}")
        if self.channel_type is ChannelType.DISPLAY:
            # spice-server sends a display channel nothing before the client's DISPLAY_INIT.
            await self.send(lambda p: p.display_init())
        if self.channel_type in _WORKER_CHANNELS:
            await self._wait_attached()

    async def _wait_attached(self) -> None:
        """Wait for the first message of a display/cursor channel.

        spice-server hands these channels to its worker thread after the link result and
        attaches the client there; their first message (SET_ACK) says that is done.  A
        session closed while a channel was still being attached crashed QEMU 7.2's
        spice-server 0.15 here (SIGSEGV in its SPICE Worker thread, after "got disconnected
        while connecting channel"), so "linked" means attached for these channels."""
        waiter = asyncio.create_task(self._first_message.wait())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait(
                {waiter, closed}, timeout=self.timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            waiter.cancel()
            closed.cancel()
        if not self._first_message.is_set():
            err = self.error
            await self.close()
            raise SpiceConnectionError(
                f"{self._where()}: linked, but the server sent nothing within "
                f"{self.timeout:.1f} s" + (f" ({err})" if err else "")
            ) from err
        self.link_seconds = time.perf_counter() - self._link_started

    async def _connect(self) -> None:
        started = time.perf_counter()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                    limit=_READ_SIZE,
                ),
                self.timeout,
            )
        except ssl.SSLCertVerificationError as err:
            raise SpiceConnectionError(
                f"{self._where()}: TLS certificate check failed ({err.verify_message}); "
                "pass the CA that signed the server's certificate"
            ) from err
        except (OSError, ssl.SSLError) as err:
            raise SpiceConnectionError(
                f"cannot connect to {self._where()}: {err}; is the VM running with "
                f"-spice {'tls-' if self.tls else ''}port={self.port}?"
            ) from err
        self.connect_seconds = time.perf_counter() - started

    async def _read_some(self) -> bytes:
        assert self._reader is not None
        try:
            data = await self._reader.read(_READ_SIZE)
        except (OSError, ssl.SSLError) as err:
            raise SpiceConnectionError(f"{self._where()}: connection failed: {err}") from err
        if not data:
            raise SpiceConnectionError(
                f"{self._where()}: the server closed the connection "
                f"({self.state.value}, link {self._link.state.value})"
            )
        return data

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        if self._writer is None or self._writer.is_closing():
            raise SpiceConnectionError(f"{self._where()} is not connected")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, ssl.SSLError) as err:
            raise SpiceConnectionError(f"{self._where()}: write failed: {err}") from err

    async def _run_link(self) -> None:
        started = self._link_started = time.perf_counter()
        await self._write(self._link.start())
        while True:
            event = self._link.next_event()
            if event is NEED_DATA:
                self._link.receive_data(await self._read_some())
            elif isinstance(event, LinkReplyReceived):
                await self._write(self._link.send_ticket())
            elif isinstance(event, Linked):
                break
        self.link_seconds = time.perf_counter() - started
        self.server_channel_caps = event.server_channel_caps
        self.protocol = SpiceChannelProtocol(
            self.channel_type, self.channel_id, mini_header=event.mini_header
        )
        self.protocol.receive_data(self._link.trailing_data)

    async def _read_loop(self) -> None:
        assert self.protocol is not None
        proto = self.protocol
        try:
            while True:
                while (event := proto.next_event()) is not NEED_DATA:
                    self._put(event)
                await self._write(proto.data_to_send())
                try:
                    proto.receive_data(await self._read_some())
                except SpiceConnectionError:
                    if proto.state is not ChannelState.OPEN:
                        break  # DISCONNECTING announced, or we closed: an orderly end
                    raise
        except SpiceError as err:
            self.error = err
            self.state = ChannelRunState.FAILED
        finally:
            proto.connection_lost()
            if self.state is ChannelRunState.READY:
                self.state = ChannelRunState.CLOSED
            self._closed.set()
            self._events.put_nowait(_EOF)

    def _put(self, event: object) -> None:
        self._first_message.set()
        if self._events.qsize() >= _QUEUE_LIMIT:
            self._events.get_nowait()
            self.dropped_events += 1
        self._events.put_nowait(event)

    def _require_ready(self) -> SpiceChannelProtocol:
        if self.state is not ChannelRunState.READY or self.protocol is None:
            detail = f": {self.error}" if self.error else ""
            raise SpiceUsageError(f"{self._where()} is {self.state.value}{detail}")
        return self.protocol

    async def send(self, build: Callable[[SpiceChannelProtocol], bytes]) -> None:
        """Send what ``build(protocol)`` frames, e.g. ``lambda p: p.attach_channels()``."""
        await self._write(build(self._require_ready()))

    async def next_event(self, timeout: float | None = None) -> object:
        """The next server event; ``SpiceConnectionError`` once the channel has ended."""
        try:
            event = await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError as err:
            raise SpiceConnectionError(f"{self._where()}: no message within {timeout} s") from err
        if event is _EOF:
            self._events.put_nowait(_EOF)  # keep telling later callers
            cause = self.error
            raise SpiceConnectionError(
                f"{self._where()} ended" + (f": {cause}" if cause else "")
            ) from cause
        return event

    async def wait_for(self, kind: type[E], timeout: float | None = None) -> E:
        """Skip events until one of type ``kind`` arrives (others are dropped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                event = await self.next_event(left)
            except SpiceConnectionError as err:
                if isinstance(err.__cause__, TimeoutError):
                    raise SpiceConnectionError(
                        f"{self._where()}: no {kind.__name__} within {timeout} s"
                    ) from err
                raise
            if isinstance(event, kind):
                return event

    async def _abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()
        if self.state is not ChannelRunState.CLOSED:
            self.state = ChannelRunState.FAILED

    async def close(self) -> None:
        """Say DISCONNECTING (if linked), close the connection, stop the reader."""
        if self.state in (ChannelRunState.CLOSED, ChannelRunState.IDLE):
            self.state = ChannelRunState.CLOSED
            return
        if self.protocol is not None and self.state is ChannelRunState.READY:
            with contextlib.suppress(SpiceError):
                await self._write(self.protocol.disconnect())
        if self.state is ChannelRunState.READY:
            self.state = ChannelRunState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()


_EOF = object()


class ConnectionState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class SpiceVmConnection:
    """All Spice channels of one VM; the main channel first, the others on demand."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        *,
        vm_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.password = password or ""
        self.vm_id = vm_id or f"{host}:{port}"
        self.state = ConnectionState.DISCONNECTED
        self.channels: dict[tuple[ChannelType, int], SpiceChannel] = {}
        self.init: m.MainInit | None = None
        self.available: tuple[tuple[int, int], ...] = ()
        self.timings: dict[str, float] = {}

    def _new_channel(self, ctype: ChannelType, cid: int, connection_id: int) -> SpiceChannel:
        return SpiceChannel(
            self.host,
            self.port,
            ctype,
            cid,
            password=self.password,
            connection_id=connection_id,
            tls=self.tls,
            timeout=self.timeout,
        )

    async def connect(self) -> None:
        """Link main, read MAIN_INIT, send ATTACH_CHANNELS and read CHANNELS_LIST."""
        if self.state is not ConnectionState.DISCONNECTED:
            raise SpiceUsageError(f"Spice connection to {self.vm_id} is {self.state.value}")
        self.state = ConnectionState.CONNECTING
        started = time.perf_counter()
        main = self._new_channel(ChannelType.MAIN, 0, 0)
        self.channels[(ChannelType.MAIN, 0)] = main
        try:
            await main.open()
            self.timings["tcp_connect"] = main.connect_seconds or 0.0
            self.timings["link_main"] = main.link_seconds or 0.0
            self.init = await main.wait_for(m.MainInit, self.timeout)
            self.timings["main_init"] = time.perf_counter() - started
            await main.send(lambda p: p.attach_channels())
            listed = await main.wait_for(m.ChannelsList, self.timeout)
            self.timings["channels_list"] = time.perf_counter() - started
        except BaseException:
            await self.close()
            raise
        self.available = listed.channels
        self.state = ConnectionState.CONNECTED

    @property
    def session_id(self) -> int:
        if self.init is None:
            raise SpiceUsageError(f"Spice connection to {self.vm_id} has no session yet")
        return self.init.session_id

    def channel(self, ctype: ChannelType, cid: int = 0) -> SpiceChannel:
        try:
            return self.channels[(ctype, cid)]
        except KeyError:
            raise SpiceUsageError(
                f"{ctype.name.lower()}:{cid} of {self.vm_id} is not open; open_channel() first"
            ) from None

    async def open_channel(self, ctype: ChannelType, cid: int = 0) -> SpiceChannel:
        """Link one more channel of this session (a no-op if it is already READY)."""
        if self.state is not ConnectionState.CONNECTED:
            raise SpiceUsageError(f"Spice connection to {self.vm_id} is {self.state.value}")
        key = (ChannelType(ctype), cid)
        existing = self.channels.get(key)
        if existing is not None and existing.state is ChannelRunState.READY:
            return existing
        channel = self._new_channel(key[0], cid, self.session_id)
        self.channels[key] = channel
        await channel.open()
        self.timings[f"link_{channel.name}"] = channel.link_seconds or 0.0
        return channel

    async def close_channel(self, ctype: ChannelType, cid: int = 0) -> None:
        channel = self.channels.pop((ChannelType(ctype), cid), None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        # The main channel last: closing it ends the session of every other channel.
        for key in sorted(self.channels, key=lambda k: k[0] is ChannelType.MAIN):
            await self.channels.pop(key).close()
        self.state = ConnectionState.CLOSED

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- input helpers (open the inputs channel on first use) ------------------------------

    async def _inputs(self) -> SpiceChannel:
        return await self.open_channel(ChannelType.INPUTS)

    async def type_text(self, text: str) -> None:
        strokes = text_strokes(text)
        await (await self._inputs()).send(lambda p: p.keys(strokes))

    async def send_keys(self, combo: str) -> None:
        """A key or combination by name, e.g. ``"enter"`` or ``"ctrl+alt+delete"``."""
        strokes = combo_strokes(combo)
        await (await self._inputs()).send(lambda p: p.keys(strokes))

    async def mouse_position(self, x: int, y: int, display_id: int = 0) -> None:
        await (await self._inputs()).send(lambda p: p.mouse_position(x, y, display_id))

    async def mouse_motion(self, dx: int, dy: int) -> None:
        await (await self._inputs()).send(lambda p: p.mouse_motion(dx, dy))

    async def mouse_click(self, button: MouseButton = MouseButton.LEFT) -> None:
        await (await self._inputs()).send(lambda p: p.click(button))


@dataclass
class ProbeResult:
    """What ``probe`` found; times are in milliseconds from the start of the probe
    (``*_at``) or durations (``link_*``)."""

    host: str
    port: int
    tls: bool
    session_id: int = 0
    main_init: dict[str, Any] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    tcp_connect_ms: float = 0.0
    link_main_ms: float = 0.0
    main_init_at_ms: float = 0.0
    channels_list_at_ms: float = 0.0
    channel_link_ms: dict[str, float] = field(default_factory=dict)
    channel_errors: dict[str, str] = field(default_factory=dict)
    all_linked_at_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def probe(
    host: str,
    port: int,
    password: str | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> ProbeResult:
    """Link main, list the server's channels, link each once (concurrently), and time it.

    A channel that fails to link is reported in ``channel_errors``; a failure of the
    main channel (connection, password) raises."""
    started = time.perf_counter()
    result = ProbeResult(host=host, port=port, tls=tls is not None)
    async with SpiceVmConnection(host, port, password, tls, timeout=timeout) as vm:
        assert vm.init is not None
        result.session_id = vm.init.session_id
        result.main_init = asdict(vm.init)
        result.tcp_connect_ms = vm.timings["tcp_connect"] * 1000
        result.link_main_ms = vm.timings["link_main"] * 1000
        result.main_init_at_ms = vm.timings["main_init"] * 1000
        result.channels_list_at_ms = vm.timings["channels_list"] * 1000
        result.channels = ["main:0", *m.ChannelsList(vm.available).names()]

        async def link_one(ctype: int, cid: int) -> None:
            name = m.ChannelsList(((ctype, cid),)).names()[0]
            try:
                channel = await vm.open_channel(ChannelType(ctype), cid)
                result.channel_link_ms[name] = (channel.link_seconds or 0.0) * 1000
            except (SpiceError, ValueError) as err:
                result.channel_errors[name] = str(err)

        await asyncio.gather(*(link_one(t, i) for t, i in vm.available))
        result.all_linked_at_ms = (time.perf_counter() - started) * 1000
    return result
