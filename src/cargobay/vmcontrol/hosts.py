"""One long-lived libvirt connection per host, shared by every VM on it.

``HostConnection`` owns a ``virConnect`` and keeps it alive:

- keepalive probes (``setKeepAlive``) so a host that silently went away is noticed;
- a close callback: when libvirt reports the connection closed (EOF, keepalive timeout,
  error) the connection goes ``RECONNECTING`` and a task reopens it with exponential
  backoff and jitter (``ReconnectBackoff``), then re-registers every event subscription,
  so callers keep their subscriptions across a libvirtd restart or an ssh drop;
- concurrency control: at most ``ops_limit`` blocking libvirt calls at once per host
  (a semaphore), run in worker threads so the asyncio loop never blocks;
- health: state, last error, reconnect count, round-trip time of the last check, calls
  in flight.

State machine (every transition is in ``_set_state``)::

    IDLE --connect--> CONNECTING --ok--> CONNECTED --closed--> RECONNECTING --ok--> CONNECTED
                         |                                        |
                         +--error--> FAILED <--max attempts-------+
    any --close()--> CLOSED

Calls made while ``RECONNECTING`` or ``FAILED`` fail at once with ``HostUnavailable``
naming the host and its last error; they are not queued (a test run wants to know now).
Libvirt's callbacks run on the libvirt event thread (``libvirt_loop``) and are handed to
the loop that connected, with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cargobay.errors import NotFound, VMControlError
from cargobay.vmcontrol.config import HostInfo, TransportConfig
from cargobay.vmcontrol.libvirt_loop import ensure_event_loop, import_libvirt

__all__ = [
    "HostConnection",
    "HostError",
    "HostHealth",
    "HostState",
    "HostUnavailable",
    "HostUnreachable",
    "LibvirtCallError",
    "LibvirtMissing",
    "Subscription",
    "UnknownHost",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class HostError(VMControlError):
    """Something went wrong with a libvirt host; the message names the host."""

    code = "host_error"
    status = 502

    def __init__(self, host_id: str, message: str) -> None:
        self.host_id = host_id
        super().__init__(f"host {host_id!r}: {message}")


class HostUnreachable(HostError):
    """Opening the connection failed (libvirtd down, ssh refused, wrong URI path)."""

    code = "host_unreachable"
    status = 503


class HostUnavailable(HostError):
    """The host is reconnecting or gave up; calls fail until it is back."""

    code = "host_unavailable"
    status = 503


class LibvirtCallError(HostError):
    """A libvirt call on a connected host failed (no such domain, bad XML ...)."""

    code = "libvirt_error"
    status = 502

    def __init__(
        self,
        host_id: str,
        message: str,
        *,
        libvirt_code: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.libvirt_code = libvirt_code
        self.detail = detail if detail is not None else message
        """libvirt's own message, without the host and operation."""
        super().__init__(host_id, message)


class UnknownHost(VMControlError, NotFound):
    code = "unknown_host"
    status = 404


class LibvirtMissing(VMControlError):
    code = "libvirt_missing"
    status = 501


class HostState(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class HostHealth:
    """A snapshot of one host's connection, as ``cargobay host ls`` shows it."""

    host_id: str
    uri: str
    state: HostState
    tags: tuple[str, ...]
    connected_since: float | None
    """Wall-clock time of the current connection, None when not connected."""
    last_error: str | None
    reconnects: int
    last_check_ms: float | None
    """Round trip of the last ``check()`` (a ``getLibVersion`` call)."""
    calls_in_flight: int
    hostname: str | None
    libvirt_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.host_id,
            "uri": self.uri,
            "state": self.state.value,
            "healthy": self.state is HostState.CONNECTED,
            "tags": list(self.tags),
            "connected_since": self.connected_since,
            "last_error": self.last_error,
            "reconnects": self.reconnects,
            "last_check_ms": self.last_check_ms,
            "calls_in_flight": self.calls_in_flight,
            "hostname": self.hostname,
            "libvirt_version": self.libvirt_version,
        }


@dataclass
class Subscription:
    """An event subscription that survives reconnects.  ``register`` registers it on a
    fresh ``virConnect`` and returns libvirt's callback id; ``deregister`` undoes it."""

    name: str
    register: Callable[[Any], int]
    deregister: Callable[[Any, int], None]
    callback_id: int | None = None
    active: bool = True


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


@dataclass
class _Stats:
    connected_since: float | None = None
    last_error: str | None = None
    reconnects: int = 0
    last_check_ms: float | None = None
    hostname: str | None = None
    libvirt_version: str | None = None
    in_flight: int = 0


class HostConnection:
    """The shared libvirt connection of one host (see the module docstring)."""

    def __init__(self, info: HostInfo, settings: TransportConfig | None = None) -> None:
        self.info = info
        self.settings = settings or TransportConfig()
        self._libvirt = import_libvirt()
        self._conn: Any = None
        self._state = HostState.IDLE
        self._stats = _Stats()
        self._ops = asyncio.Semaphore(self.settings.ops_limit(info))
        self._subscriptions: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    # --- properties ---------------------------------------------------------------------

    @property
    def host_id(self) -> str:
        return self.info.id

    @property
    def state(self) -> HostState:
        return self._state

    @property
    def uri(self) -> str:
        return str(self.info.uri)

    def health(self) -> HostHealth:
        stats = self._stats
        return HostHealth(
            host_id=self.host_id,
            uri=self.uri,
            state=self._state,
            tags=self.info.tags,
            connected_since=stats.connected_since,
            last_error=stats.last_error,
            reconnects=stats.reconnects,
            last_check_ms=stats.last_check_ms,
            calls_in_flight=stats.in_flight,
            hostname=stats.hostname,
            libvirt_version=stats.libvirt_version,
        )

    # --- connecting ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection; ``HostUnreachable`` (naming the host) when it fails."""
        if self._state is HostState.CLOSED:
            raise HostUnavailable(self.host_id, "the connection was closed")
        if self._state is HostState.CONNECTED:
            return
        self._loop = asyncio.get_running_loop()
        ensure_event_loop()
        await self._set_state(HostState.CONNECTING)
        try:
            await self._open()
        except HostUnreachable as err:
            self._stats.last_error = str(err)
            await self._set_state(HostState.FAILED)
            raise

    async def _open(self) -> None:
        uri = str(self.info.uri)
        timeout = self.settings.connect_timeout
        opened = asyncio.ensure_future(asyncio.to_thread(self._open_blocking, uri))
        try:
            conn = await asyncio.wait_for(asyncio.shield(opened), timeout)
        except TimeoutError as err:
            # The thread cannot be interrupted: close what it opens, whenever it does.
            opened.add_done_callback(_close_late)
            raise HostUnreachable(
                self.host_id, f"no connection to {uri} within {timeout:g} s"
            ) from err
        except self._libvirt.libvirtError as err:
            raise HostUnreachable(self.host_id, f"cannot connect to {uri}: {_msg(err)}") from err
        await self._adopt(conn)

    def _open_blocking(self, uri: str) -> Any:
        conn = self._libvirt.openAuth(uri, [[], None, None], 0)
        try:
            if self.settings.keepalive_interval > 0:
                try:
                    conn.setKeepAlive(
                        self.settings.keepalive_interval, self.settings.keepalive_count
                    )
                except self._libvirt.libvirtError:
                    # local connections go through the same RPC layer and support it too,
                    # but a dead-peer check is not worth refusing one over
                    if not self.info.uri.is_local:
                        raise
            conn.registerCloseCallback(self._closed_from_libvirt, None)
            self._stats.hostname = _try(conn.getHostname)
            version = _try(conn.getLibVersion)
            self._stats.libvirt_version = _version(version) if version else None
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return conn

    async def _adopt(self, conn: Any) -> None:
        self._conn = conn
        for sub in self._subscriptions:
            if sub.active:
                try:
                    sub.callback_id = await asyncio.to_thread(sub.register, conn)
                except self._libvirt.libvirtError as err:
                    log.warning(
                        "host %s: re-subscribing %s failed: %s", self.host_id, sub.name, err
                    )
                    sub.callback_id = None
        self._stats.connected_since = time.time()
        self._stats.last_error = None
        await self._set_state(HostState.CONNECTED)

    def _closed_from_libvirt(self, conn: Any, reason: int, opaque: Any) -> None:
        """libvirt's close callback (event thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the owner loop is shutting down
            loop.call_soon_threadsafe(self._on_closed, conn, reason)

    def _on_closed(self, conn: Any, reason: int) -> None:
        if conn is not self._conn or self._state is HostState.CLOSED:
            return
        reasons = {0: "error", 1: "end of file", 2: "keepalive timeout", 3: "closed by client"}
        why = reasons.get(reason, f"reason {reason}")
        log.warning("host %s: connection lost (%s); reconnecting", self.host_id, why)
        self._stats.last_error = f"connection lost: {why}"
        self._stats.connected_since = None
        self._conn = None
        with contextlib.suppress(Exception):
            conn.unregisterCloseCallback()
        for sub in self._subscriptions:
            sub.callback_id = None
        self._state_now(HostState.RECONNECTING)
        self._reconnector = asyncio.get_running_loop().create_task(
            self._reconnect(), name=f"libvirt-reconnect-{self.host_id}"
        )
        asyncio.get_running_loop().run_in_executor(None, _close_quietly, conn)

    async def _reconnect(self) -> None:
        backoff = self.settings.reconnect
        attempt = 0
        while self._state is HostState.RECONNECTING:
            base = backoff.delay(attempt)
            await asyncio.sleep(base * (1 + random.uniform(-backoff.jitter, backoff.jitter)))
            if self._state is not HostState.RECONNECTING:
                return
            try:
                await self._open()
            except HostUnreachable as err:
                self._stats.last_error = str(err)
                attempt += 1
                if backoff.max_attempts is not None and attempt >= backoff.max_attempts:
                    await self._set_state(HostState.FAILED)
                    return
                continue
            self._stats.reconnects += 1
            log.info("host %s: reconnected after %d attempt(s)", self.host_id, attempt + 1)
            return

    async def reconnect_now(self) -> None:
        """Reopen a ``FAILED`` connection (``cargobay host ls`` retries failed hosts)."""
        if self._state in (HostState.FAILED, HostState.IDLE):
            await self.connect()

    async def wait_state(self, state: HostState, *, timeout: float) -> None:
        """Wait until the connection is in ``state`` (for tests and for callers that
        want to wait out a reconnect)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self._state is state)

    def _state_now(self, state: HostState) -> None:
        self._state = state
        loop = self._loop
        if loop is not None:
            loop.create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _set_state(self, state: HostState) -> None:
        self._state_now(state)
        await self._notify()

    # --- calls --------------------------------------------------------------------------

    def _require_conn(self) -> Any:
        if self._state is HostState.CONNECTED and self._conn is not None:
            return self._conn
        last = f" (last error: {self._stats.last_error})" if self._stats.last_error else ""
        raise HostUnavailable(self.host_id, f"not connected: {self._state.value}{last}")

    async def call(self, fn: Callable[[Any], T], *, what: str) -> T:
        """Run ``fn(virConnect)`` in a worker thread, at most ``ops_limit`` at once.
        libvirt errors become ``LibvirtCallError`` naming the host and ``what``."""
        conn = self._require_conn()
        async with self._ops:
            self._stats.in_flight += 1
            try:
                return await asyncio.to_thread(fn, conn)
            except self._libvirt.libvirtError as err:
                detail = _msg(err)
                raise LibvirtCallError(
                    self.host_id,
                    f"{what}: {detail}",
                    libvirt_code=err.get_error_code(),
                    detail=detail,
                ) from err
            finally:
                self._stats.in_flight -= 1

    @property
    def raw(self) -> Any:
        """The ``virConnect`` itself, for callers that manage threads themselves."""
        return self._require_conn()

    async def check(self) -> HostHealth:
        """One round trip to the host (``getLibVersion``), timed; the health after it."""
        started = time.perf_counter()
        try:
            await self.call(lambda conn: conn.getLibVersion(), what="health check")
        except HostError as err:
            self._stats.last_error = str(err)
        else:
            self._stats.last_check_ms = (time.perf_counter() - started) * 1000
        return self.health()

    # --- subscriptions ------------------------------------------------------------------

    async def subscribe(self, sub: Subscription) -> Subscription:
        """Register ``sub`` now and after every reconnect."""
        conn = self._require_conn()
        self._subscriptions.append(sub)
        try:
            sub.callback_id = await asyncio.to_thread(sub.register, conn)
        except self._libvirt.libvirtError as err:
            self._subscriptions.remove(sub)
            raise LibvirtCallError(self.host_id, f"subscribing {sub.name}: {_msg(err)}") from err
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        sub.active = False
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)
        conn, callback_id = self._conn, sub.callback_id
        sub.callback_id = None
        if conn is not None and callback_id is not None:
            with contextlib.suppress(self._libvirt.libvirtError):
                await asyncio.to_thread(sub.deregister, conn, callback_id)

    def dispatch(self, fn: Callable[..., None], *args: Any) -> None:
        """Hand a libvirt callback (event thread) to the owner loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    # --- closing ------------------------------------------------------------------------

    async def close(self) -> None:
        if self._state is HostState.CLOSED:
            return
        conn, self._conn = self._conn, None
        await self._set_state(HostState.CLOSED)
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnector
        for sub in list(self._subscriptions):
            await self.unsubscribe(sub)
        if conn is not None:
            await asyncio.to_thread(_close_conn, conn)


def _close_conn(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.unregisterCloseCallback()
    with contextlib.suppress(Exception):
        conn.close()


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _close_late(opened: asyncio.Future[Any]) -> None:
    if not opened.cancelled() and opened.exception() is None:
        _close_conn(opened.result())


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _msg(err: Any) -> str:
    text = err.get_error_message() if hasattr(err, "get_error_message") else None
    return str(text or err)
