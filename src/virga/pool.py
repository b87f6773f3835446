"""A pool of connected ``VirgaClient``s, with health checks (seed 001, 7.2).

    pool = ConnectionPool(ClientConfig(address="unix:/run/agent.sock"), max_size=8)
    async with pool:
        async with pool.acquire() as client:
            await client.send(b"request")
            reply = await client.recv()

What it does and why:

* ``acquire()`` hands out an idle client (the most recently returned one, so surplus
  connections age out), else opens a new one while the pool holds fewer than
  ``max_size``, else queues the caller.  Waiters are served first come, first served:
  a returned client, or the slot of an evicted one, goes to the longest waiter.  An
  acquire that takes longer than ``acquire_timeout`` raises ``VirgaTimeoutError``; a
  connect that fails raises its own error (``ConnectError``, ...).
* Before a client is handed out it is checked (``check_on_acquire``): yamux clients
  answer a ping within ``health_check_timeout``, xtransport clients (no ping frame)
  must still be connected.  A client that fails is closed and replaced.
* A client whose user raised inside ``async with pool.acquire()`` is closed, not put
  back: the exception may have cut a request/reply exchange in half, and the next user
  would read the stale reply.  So is a client that is no longer connected.
* Every ``health_check_interval`` seconds a background task checks the idle clients and
  evicts the dead, closes clients idle for longer than ``idle_timeout`` (keeping
  ``min_size``), and opens clients up to ``min_size``.
* ``close()`` closes every client, idle or in use, and fails every waiter with
  ``ClosedError``.

``check_health(client)`` is the same probe, for callers with a client of their own.
The pool lives on one event loop and is not thread-safe, like the rest of virga.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Self

from virga.client import ClientConfig, VirgaClient
from virga.errors import ClosedError, ConfigError, VirgaError, VirgaTimeoutError

__all__ = ["ClientFactory", "ConnectionPool", "Health", "PoolStats", "check_health"]

log = logging.getLogger("virga.pool")

ClientFactory = Callable[[], Awaitable[VirgaClient]]
"""Makes one client; the pool connects it if it is not connected yet."""

DEFAULT_HEALTH_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class Health:
    """The result of one health check: ``latency`` is the ping round trip in seconds
    (``None`` for xtransport, which has no ping); ``error`` says why ``ok`` is false."""

    ok: bool
    latency: float | None = None
    error: str | None = None


async def check_health(client: VirgaClient, timeout: float = DEFAULT_HEALTH_TIMEOUT) -> Health:
    """Probe ``client`` without reconnecting it: a ping over yamux, the connection state
    over xtransport.  Never raises for an unhealthy client (only if cancelled)."""
    if not client.is_connected():
        return Health(False, error=f"{client.config.target}: not connected")
    if client.protocol != "yamux":
        return Health(True)
    try:
        async with asyncio.timeout(timeout):
            latency = await client.ping()
    except TimeoutError:  # VirgaTimeoutError is one too
        return Health(False, error=f"{client.config.target}: no ping reply within {timeout}s")
    except VirgaError as err:
        return Health(False, error=f"{client.config.target}: ping failed: {err}")
    return Health(True, latency=latency)


@dataclass(frozen=True, slots=True)
class PoolStats:
    size: int
    """Clients the pool holds (idle + in use + being checked or opened)."""
    idle: int
    in_use: int
    waiting: int
    """Callers queued in ``acquire``."""
    created: int
    evicted: int
    """Closed because they failed a health check or lost their connection."""
    expired: int
    """Closed after ``idle_timeout``."""
    discarded: int
    """Closed because their user raised inside ``acquire()``."""


class _Entry:
    __slots__ = ("client", "idle_since", "uses")

    def __init__(self, client: VirgaClient, now: float) -> None:
        self.client = client
        self.idle_since = now
        self.uses = 0


class _Slot(enum.Enum):
    """Handed to a waiter instead of a client: room for one more, already counted in size."""

    FREE = "free"


_Grant = _Entry | _Slot


class ConnectionPool:
    """Up to ``max_size`` connected clients, shared by whoever ``acquire()``s them.

    ``source`` is an async factory returning a ``VirgaClient`` (connected or not), or a
    ``ClientConfig``, from which clients of ``protocol`` are made.  Middleware objects in
    the config are shared by every client of the pool (one ``RateLimit`` limits them all).
    """

    def __init__(
        self,
        source: ClientFactory | ClientConfig,
        *,
        protocol: Literal["yamux", "xtransport"] = "yamux",
        max_size: int = 10,
        min_size: int = 0,
        acquire_timeout: float | None = 10.0,
        health_check_interval: float | None = 30.0,
        health_check_timeout: float = DEFAULT_HEALTH_TIMEOUT,
        idle_timeout: float | None = 300.0,
        check_on_acquire: bool = True,
    ) -> None:
        if max_size < 1:
            raise ConfigError(f"pool max_size={max_size} must be at least 1")
        if not 0 <= min_size <= max_size:
            raise ConfigError(f"pool min_size={min_size} must be in 0..max_size={max_size}")
        for name, value in (
            ("acquire_timeout", acquire_timeout),
            ("health_check_interval", health_check_interval),
            ("health_check_timeout", health_check_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if value is not None and not value > 0:
                raise ConfigError(f"pool {name}={value} must be positive (or None for none)")
        if isinstance(source, ClientConfig):
            if protocol not in ("yamux", "xtransport"):
                raise ConfigError(f"pool protocol={protocol!r} must be 'yamux' or 'xtransport'")
            self._factory = _config_factory(source, protocol)
            self._target = source.target
        elif callable(source):
            self._factory = source
            self._target = getattr(source, "__name__", "factory")
        else:
            raise ConfigError(
                f"pool source must be a ClientConfig or an async client factory, "
                f"not {type(source).__name__}"
            )
        self.max_size = max_size
        self.min_size = min_size
        self.acquire_timeout = acquire_timeout
        self.health_check_interval = health_check_interval
        self.health_check_timeout = health_check_timeout
        self.idle_timeout = idle_timeout
        self.check_on_acquire = check_on_acquire

        # Invariant: _size == len(_idle) + len(_in_use) + len(_checking) + clients being
        # opened (counted from the moment a slot is taken or granted to a waiter).
        self._idle: deque[_Entry] = deque()  # oldest on the left, newest on the right
        self._in_use: set[_Entry] = set()
        self._checking: set[_Entry] = set()
        self._waiters: deque[asyncio.Future[_Grant]] = deque()
        self._size = 0
        self._closed = False
        self._maintainer: asyncio.Task[None] | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self._created = self._evicted = self._expired = self._discarded = 0

    def __repr__(self) -> str:
        s = self.stats
        state = "closed" if self._closed else f"{s.in_use}/{s.size} in use, max {self.max_size}"
        return f"<ConnectionPool {self._target} {state}>"

    @property
    def stats(self) -> PoolStats:
        return PoolStats(
            size=self._size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            waiting=sum(1 for w in self._waiters if not w.done()),
            created=self._created,
            evicted=self._evicted,
            expired=self._expired,
            discarded=self._discarded,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open ``min_size`` clients and start the background checks (``acquire`` starts
        the checks too; ``start`` only makes the first connects fail early)."""
        self._check_open()
        self._ensure_maintainer()
        await self._fill(raise_errors=True)

    async def close(self) -> None:
        """Close every client, idle or in use; waiters get ``ClosedError``.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.wait([self._maintainer])
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ClosedError(f"pool {self._target} closed while waiting"))
        # Clients being opened are counted in _size but in no set: their opener, seeing
        # the pool closed, takes them off.  Clients in use are closed under their users.
        entries = [*self._idle, *self._in_use, *self._checking]
        self._idle.clear()
        self._in_use.clear()
        self._checking.clear()
        self._size -= len(entries)
        await asyncio.gather(*(_disconnect(e.client) for e in entries))
        if self._closers:
            await asyncio.wait(list(self._closers))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"pool {self._target} is closed")

    # --- acquire / release ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[VirgaClient]:
        """``async with pool.acquire() as client:`` a checked, connected client."""
        entry = await self._checkout()
        try:
            yield entry.client
        except BaseException:
            await self._remove(entry, "its user raised", "discarded")
            raise
        await self._checkin(entry)

    async def _checkout(self) -> _Entry:
        self._check_open()
        self._ensure_maintainer()
        deadline = asyncio.timeout(self.acquire_timeout)
        try:
            async with deadline:
                return await self._checkout_loop()
        except TimeoutError as err:
            if not deadline.expired():
                raise  # the connect's own timeout, already a VirgaTimeoutError
            raise VirgaTimeoutError(
                f"pool {self._target}: no client within acquire_timeout={self.acquire_timeout}s "
                f"({len(self._in_use)} of max_size={self.max_size} in use, "
                f"{self.stats.waiting} waiting); raise max_size or return clients sooner"
            ) from err

    async def _checkout_loop(self) -> _Entry:
        while True:
            self._check_open()
            grant: _Grant
            if self._idle:
                grant = self._idle.pop()
                self._in_use.add(grant)
            elif self._size < self.max_size:
                self._size += 1
                grant = _Slot.FREE
            else:
                grant = await self._wait()
            if grant is _Slot.FREE:
                return await self._open_entry()
            if await self._usable(grant):
                return grant

    async def _wait(self) -> _Grant:
        waiter: asyncio.Future[_Grant] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            elif not waiter.cancelled() and waiter.exception() is None:
                # Granted, then cancelled before running: pass the grant on.
                self._regrant(waiter.result())
            raise

    def _regrant(self, grant: _Grant) -> None:
        if grant is _Slot.FREE:
            self._size -= 1
            self._grant_slot()
        else:
            self._in_use.discard(grant)
            self._put_idle(grant)

    async def _open_entry(self) -> _Entry:
        """Open a client in a slot already counted in ``_size``."""
        client: VirgaClient | None = None
        try:
            client = await self._factory()
            if not client.is_connected():
                await client.connect()
        except BaseException:
            self._size -= 1
            self._grant_slot()
            if client is not None:
                await _disconnect(client)
            raise
        if self._closed:
            self._size -= 1
            await _disconnect(client)
            raise ClosedError(f"pool {self._target} closed while connecting")
        self._created += 1
        entry = _Entry(client, asyncio.get_running_loop().time())
        self._in_use.add(entry)
        return entry

    async def _usable(self, entry: _Entry) -> bool:
        """Check an entry reserved for the caller (in ``_in_use``); evict it if dead."""
        if not self.check_on_acquire:
            connected = entry.client.is_connected()
            health = Health(connected, error=None if connected else "not connected")
        else:
            try:
                health = await check_health(entry.client, self.health_check_timeout)
            except BaseException:  # cancelled mid-check: the client is fine, keep it
                self._in_use.discard(entry)
                self._put_idle(entry, touch=False)
                raise
        if health.ok:
            return True
        await self._remove(entry, f"failed its check before hand-out ({health.error})", "evicted")
        return False

    async def _checkin(self, entry: _Entry) -> None:
        if self._closed:  # close() already took it off the books
            await _disconnect(entry.client)
            return
        if not entry.client.is_connected():
            await self._remove(entry, "came back disconnected", "evicted")
            return
        entry.uses += 1
        self._in_use.discard(entry)
        self._put_idle(entry)

    def _put_idle(self, entry: _Entry, *, touch: bool = True) -> None:
        """Give ``entry`` to the longest waiter, or make it idle."""
        if self._closed:  # close() already took it off the books
            self._close_later(entry.client)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use.add(entry)
                waiter.set_result(entry)
                return
        if touch:
            entry.idle_since = asyncio.get_running_loop().time()
            self._idle.append(entry)
        else:
            self._idle.appendleft(entry)

    def _grant_slot(self) -> None:
        """Room was made: let the longest waiter open a client in it."""
        while self._waiters and self._size < self.max_size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._size += 1
                waiter.set_result(_Slot.FREE)
                return

    async def _remove(
        self, entry: _Entry, why: str, counter: Literal["evicted", "discarded"]
    ) -> None:
        """Close a client the pool holds (in use or being checked) and free its slot."""
        self._in_use.discard(entry)
        self._checking.discard(entry)
        if not self._closed:
            self._size -= 1
            if counter == "evicted":
                self._evicted += 1
            else:
                self._discarded += 1
            log.info("virga pool %s: closing a client: %s", self._target, why)
            self._grant_slot()
        await _disconnect(entry.client)

    def _close_later(self, client: VirgaClient) -> None:
        task = asyncio.get_running_loop().create_task(_disconnect(client))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # --- background maintenance ----------------------------------------------------------

    def _ensure_maintainer(self) -> None:
        if self._maintainer is None and self.health_check_interval is not None:
            self._maintainer = asyncio.get_running_loop().create_task(
                self._maintain(self.health_check_interval), name=f"virga-pool {self._target}"
            )

    async def _maintain(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                await self.check_idle()
            except Exception:  # keep checking; the next pass may succeed
                log.exception("virga pool %s: maintenance pass failed", self._target)

    async def check_idle(self) -> None:
        """One maintenance pass now: expire, health-check idle clients, refill to min_size."""
        self._check_open()
        self._expire()
        entries = list(self._idle)
        self._idle.clear()
        self._checking.update(entries)
        try:
            results = await asyncio.gather(
                *(check_health(e.client, self.health_check_timeout) for e in entries)
            )
        except BaseException:
            if not self._closed:  # else close() takes what is left in _checking
                for entry in reversed(entries):
                    if entry in self._checking:
                        self._checking.discard(entry)
                        self._put_idle(entry, touch=False)
            raise
        for entry, health in reversed(list(zip(entries, results, strict=True))):
            if entry not in self._checking:  # closed meanwhile
                continue
            if health.ok:
                self._checking.discard(entry)
                self._put_idle(entry, touch=False)
            else:
                await self._remove(entry, f"failed its health check ({health.error})", "evicted")
        await self._fill(raise_errors=False)

    def _expire(self) -> None:
        if self.idle_timeout is None:
            return
        now = asyncio.get_running_loop().time()
        for entry in list(self._idle):  # oldest first
            if self._size <= self.min_size:
                break
            if now - entry.idle_since >= self.idle_timeout:
                self._idle.remove(entry)
                self._size -= 1
                self._expired += 1
                log.debug(
                    "virga pool %s: closing a client idle for %.1fs",
                    self._target,
                    now - entry.idle_since,
                )
                self._close_later(entry.client)

    async def _fill(self, *, raise_errors: bool) -> None:
        while not self._closed and self._size < self.min_size:
            self._size += 1
            try:
                entry = await self._open_entry()
            except VirgaError as err:
                if raise_errors:
                    raise
                if self._closed:
                    return
                log.warning("virga pool %s: cannot refill to min_size: %s", self._target, err)
                return
            self._in_use.discard(entry)
            self._put_idle(entry)


def _config_factory(config: ClientConfig, protocol: str) -> ClientFactory:
    async def factory() -> VirgaClient:
        if protocol == "yamux":
            return VirgaClient.with_yamux(config)
        return VirgaClient.with_xtransport(config)

    return factory


async def _disconnect(client: VirgaClient) -> None:
    try:
        await client.disconnect()
    except VirgaError as err:
        log.debug("virga pool: closing %r: %s", client, err)
