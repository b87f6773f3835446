"""Run an app's process (MaiBot, the adapter, NapCat) under a pseudo-terminal, supervised.

Under a PTY the app sees a terminal, so it keeps its colours and line-by-line output; the
bytes are passed on as they are, ANSI sequences included, for the GUI's terminal view.

API (asyncio)::

    proc = PtyProcess(ProcessSpec(argv=["python", "bot.py"], cwd=..., restart="on-failure"),
                      on_output=lambda data: ..., on_event=lambda ev: ...)
    await proc.start()           # state RUNNING, proc.pid
    proc.send(b"input\\n")        # to the app's terminal
    proc.history()               # the last bytes of output (for late viewers)
    await proc.restart()
    code = await proc.stop()     # SIGTERM to its process group, SIGKILL after ``grace``
    code = await proc.wait()     # until it is stopped or the policy gives up

Mechanics: the child gets the slave side of ``pty.openpty()`` as stdin/stdout/stderr and a
session (process group) of its own; asyncio's child watcher reaps it, so no zombie is left;
stopping signals the whole group, so helpers the app spawned stop too.  The restart policy
(``no`` / ``on-failure`` / ``always``) restarts after an exponential backoff that resets once
a run lasted ``stable_after`` seconds; ``max_restarts`` bounds consecutive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import os
import pty
import signal
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from cargobay.errors import AppProcessError, InvalidInput

HISTORY_BYTES = 256 * 1024


class ProcessSpec(BaseModel):
    argv: list[str] = Field(min_length=1)
    cwd: Path | None = None
    env: dict[str, str] | None = None
    """The whole environment (None: the daemon's own); TERM defaults to xterm-256color."""
    restart: Literal["no", "on-failure", "always"] = "no"
    max_restarts: int | None = Field(default=None, ge=0)
    backoff_initial: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    stable_after: float = Field(default=10.0, ge=0)
    grace: float = Field(default=10.0, ge=0)
    cols: int = Field(default=120, ge=1, le=1000)
    rows: int = Field(default=40, ge=1, le=1000)


class ProcState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"


class ProcessEvent(BaseModel):
    kind: Literal["started", "exited", "restarting", "stopped"]
    pid: int | None = None
    exit_code: int | None = None
    """The exit status; -N when killed by signal N."""
    restarts: int = 0
    delay: float | None = None


OutputCallback = Callable[[bytes], None]
EventCallback = Callable[[ProcessEvent], None]


class PtyProcess:
    """One supervised process under a PTY.  Not thread-safe: use from one event loop."""

    def __init__(
        self,
        spec: ProcessSpec,
        *,
        on_output: OutputCallback | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.spec = spec
        self.state = ProcState.CREATED
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.restarts = 0
        self._on_output = on_output
        self._on_event = on_event
        self._history = bytearray()
        self._proc: asyncio.subprocess.Process | None = None
        self._master: int | None = None
        self._eof: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()

    # --- output ---------------------------------------------------------------------

    def history(self) -> bytes:
        return bytes(self._history)

    def _output(self, data: bytes) -> None:
        self._history += data
        if len(self._history) > HISTORY_BYTES:
            del self._history[: len(self._history) - HISTORY_BYTES]
        if self._on_output is not None:
            self._on_output(data)

    def _emit(self, event: ProcessEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except OSError as err:  # EIO: every holder of the slave side has closed it
            if err.errno not in (errno.EIO, errno.EBADF):
                raise
            data = b""
        if data:
            self._output(data)
        else:
            self._close_master()

    def _close_master(self) -> None:
        if self._master is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._eof is not None:
            self._eof.set()

    def send(self, data: bytes) -> None:
        """Write to the app's terminal (its stdin)."""
        if self._master is None or self.state != ProcState.RUNNING:
            raise AppProcessError("the process is not running")
        os.write(self._master, data)

    # --- lifecycle ------------------------------------------------------------------

    async def _spawn(self) -> asyncio.subprocess.Process:
        master, slave = pty.openpty()
        try:
            fcntl.ioctl(
                slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.spec.rows, self.spec.cols, 0, 0)
            )
            env = dict(os.environ if self.spec.env is None else self.spec.env)
            env.setdefault("TERM", "xterm-256color")
            proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.spec.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as err:
            os.close(master)
            raise AppProcessError(f"cannot start {self.spec.argv[0]!r}: {err}") from err
        finally:
            os.close(slave)  # the child holds it now; its close gives us EIO at the end
        os.set_blocking(master, False)
        self._master = master
        self._eof = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._readable)
        self._proc = proc
        self.pid = proc.pid
        self.state = ProcState.RUNNING
        self._emit(ProcessEvent(kind="started", pid=proc.pid, restarts=self.restarts))
        return proc

    async def start(self) -> None:
        """Start the process and its supervisor; AppProcessError if it cannot be spawned."""
        if self._supervisor is not None and not self._supervisor.done():
            raise AppProcessError(f"already {self.state.value} (pid {self.pid})")
        self._stopping = False
        self.restarts = 0
        self.exit_code = None
        proc = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(proc))

    async def _supervise(self, proc: asyncio.subprocess.Process) -> None:
        consecutive = 0
        while True:
            began = time.monotonic()
            code = await proc.wait()
            if self._eof is not None:  # let the last output arrive (a grandchild may hold
                with contextlib.suppress(TimeoutError):  # the pty: do not wait for it)
                    await asyncio.wait_for(self._eof.wait(), 1.0)
            self._close_master()
            self.exit_code = code
            self.state = ProcState.EXITED
            self._emit(
                ProcessEvent(kind="exited", pid=proc.pid, exit_code=code, restarts=self.restarts)
            )
            if time.monotonic() - began >= self.spec.stable_after:
                consecutive = 0
            policy = self.spec.restart
            wanted = policy == "always" or (policy == "on-failure" and code != 0)
            limit = self.spec.max_restarts
            if self._stopping or not wanted or (limit is not None and consecutive >= limit):
                break
            delay = min(self.spec.backoff_initial * 2**consecutive, self.spec.backoff_max)
            consecutive += 1
            self.restarts += 1
            self.state = ProcState.BACKOFF
            self._emit(
                ProcessEvent(
                    kind="restarting",
                    pid=proc.pid,
                    exit_code=code,
                    restarts=self.restarts,
                    delay=delay,
                )
            )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)  # stop() wakes us early
            if self._stopping:
                break
            try:
                proc = await self._spawn()
            except AppProcessError as err:  # e.g. the program was removed meanwhile
                self.state = ProcState.EXITED
                self._output(f"\r\n[cargobay] restart failed: {err}\r\n".encode())
                break
        if self._stopping:
            self.state = ProcState.STOPPED
            self._emit(
                ProcessEvent(kind="stopped", exit_code=self.exit_code, restarts=self.restarts)
            )

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the current run's process group (its leader's pid is the group id); the
        group outlives its leader while helpers it spawned are still in it."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    async def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; returns the exit code
        (None if it never ran).  Stops the restart policy too."""
        grace = self.spec.grace if grace is None else grace
        if grace < 0:
            raise InvalidInput("grace must not be negative")
        supervisor = self._supervisor
        if supervisor is None:
            return None
        self._stopping = True
        self._wake.set()
        if not supervisor.done():
            self.state = ProcState.STOPPING
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(supervisor), grace)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await supervisor
        self._signal(signal.SIGKILL)  # any helper left in the group after its leader exited
        self.state = ProcState.STOPPED
        return self.exit_code

    async def restart(self, grace: float | None = None) -> None:
        await self.stop(grace)
        await self.start()

    async def wait(self) -> int | None:
        """Until the supervisor ends (stopped, or exited with no restart due)."""
        if self._supervisor is None:
            raise AppProcessError("the process was never started")
        await asyncio.shield(self._supervisor)
        return self.exit_code
