"""The agent's ``exec`` operation and the child reaper.

Standard library and virga only (runs inside the guest).

The agent may be PID 1, so it reaps every child itself, orphans included: one SIGCHLD
handler (``loop.add_signal_handler``) runs ``waitpid(-1, WNOHANG)`` until nothing is
left and hands each status to the exec that owns the pid; statuses of pids nobody owns
(orphans re-parented to us) are discarded.  asyncio's child watchers are never used,
and neither is ``Popen.wait``: ``subprocess.Popen`` serves only as the spawner (vfork +
exec, exec errors reported through its error pipe, ``cwd``), in a new session, with
our own pipes or a pty.  Because the SIGCHLD handler runs as a loop callback, never in
the middle of synchronous code, a pid is always registered before its status can be
reaped.  When not PID 1 the agent makes itself a child subreaper, so the same code
path reaps orphans in tests.

One exec is one task plus a few helpers on the same stream: a pump per output fd, the
control reader (STDIN/END/SIGNAL/RESIZE frames) and, with stdin, a writer fed through a
small bounded queue.  A pump reads one chunk, then waits for the yamux window to send
it, so a chatty process blocks on its full pipe rather than making the agent buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Final

from cargobay.guest.channel import read_frame, write_frame
from cargobay.guest.protocol import (
    DATA_CHUNK,
    EXIT_OUTPUT_GRACE,
    FRAME_HEADER,
    ExecRequest,
    Kind,
    RequestError,
    decode_json,
)
from virga.errors import VirgaError
from virga.yamux.aio import Stream

__all__ = ["DEFAULT_PATH", "ExecService", "Reaper", "set_child_subreaper"]

log = logging.getLogger("cargobay.agent")

DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_STDIN_QUEUE: Final = 16  # chunks of STDIN waiting for the process: at most ~1 MiB
_EOF_CHAR: Final = b"\x04"
_PR_SET_CHILD_SUBREAPER: Final = 36


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False if it failed."""
    try:
        import ctypes  # only when not PID 1: PID 1 reaps orphans anyway

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Reaper:
    """Reaps every child on SIGCHLD and hands each status to the owner of its pid."""

    def __init__(self) -> None:
        self._owners: dict[int, Callable[[int], None]] = {}
        self.orphans_reaped = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # children that exited before the handler existed

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_signal_handler(signal.SIGCHLD)

    def watch(self, pid: int, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(wait_status)`` when ``pid`` is reaped."""
        self._owners[pid] = on_exit

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            owner = self._owners.pop(pid, None)
            if owner is None:
                self.orphans_reaped += 1
                log.debug("reaped orphan %d (status %#x)", pid, status)
                continue
            try:
                owner(status)
            except Exception:
                log.exception("exit handler of pid %d failed", pid)


def _decode_status(status: int) -> tuple[int | None, int | None]:
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def _group_exists(pgid: int) -> bool:
    """Whether process group ``pgid`` has members (zombies not yet reaped count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_tty() -> None:
    """Runs in the child after setsid: its stdin (the pty slave) becomes its terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _wait_fd(fd: int, writable: bool) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _wait_fd(fd, writable=True)


class ExecService:
    """Spawns exec requests' processes; one per agent."""

    def __init__(self, base_env: dict[str, str] | None = None) -> None:
        self.reaper = Reaper()
        env = dict(os.environ if base_env is None else base_env)
        env.setdefault("PATH", DEFAULT_PATH)
        self.base_env = env
        self._devnull = -1
        self.running: dict[int, _Exec] = {}
        self.killed_groups: set[int] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.reaper.install(loop)

    async def stop(self, loop: asyncio.AbstractEventLoop, timeout: float = 2.0) -> None:
        """Kill every process group still running, reap them as they die (for up to
        ``timeout`` seconds, so the agent leaves no zombies behind), stop reaping."""
        for proc in list(self.running.values()):
            proc.kill_group()
        deadline = loop.time() + timeout
        while True:
            self.reaper.reap()
            self.killed_groups = {g for g in self.killed_groups if _group_exists(g)}
            if not self.killed_groups or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        self.reaper.uninstall(loop)
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1

    async def run(self, stream: Stream, req: ExecRequest) -> None:
        """Serve one exec request on ``stream`` (RequestError before STARTED if it cannot)."""
        proc = _Exec(self, stream, req)
        proc.spawn()
        self.running[proc.pid] = proc
        try:
            await proc.serve()
        finally:
            self.running.pop(proc.pid, None)
            await proc.cleanup()
            if self.killed_groups:  # keep only groups that still have members
                self.killed_groups = {g for g in self.killed_groups if _group_exists(g)}


class _Exec:
    """One running exec request: its process, descriptors and helper tasks."""

    def __init__(self, service: ExecService, stream: Stream, req: ExecRequest) -> None:
        self._service = service
        self._stream = stream
        self._req = req
        self._loop = asyncio.get_running_loop()
        self.pid = -1
        self._fds: set[int] = set()
        self._outputs: list[tuple[int, bytes]] = []  # (fd, frame kind) to pump
        self._stdin_fd = -1  # where STDIN goes: the pipe, or the pty master
        self._master = -1
        # Set by the reaper.  ``reaped`` is the truth: the future is cancelled along
        # with a task that awaits it.
        self.reaped = False
        self._status: asyncio.Future[int] = self._loop.create_future()
        self._started = 0.0
        self._duration = 0.0
        self._timed_out = False
        self._aborted = False
        self._output_closed = False
        self._output_waiters: set[asyncio.Future[bool]] = set()
        self._stdin_queue: asyncio.Queue[bytes | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: list[asyncio.TimerHandle] = []

    # -- spawning ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        req = self._req
        env = dict(self._service.base_env)
        if req.tty:
            env["TERM"] = "xterm-256color"
        if req.env:
            env.update(req.env)
        return env

    def spawn(self) -> None:
        req = self._req
        child_fds: list[int] = []
        parent_fds: list[int] = []
        preexec: Callable[[], None] | None = None
        try:
            if req.tty:
                master, slave = os.openpty()
                parent_fds.append(master)
                child_fds.append(slave)
                _set_winsize(slave, req.rows, req.cols)
                stdin = stdout = stderr = slave
                preexec = _take_controlling_tty
                self._master = self._stdin_fd = master
                self._outputs = [(master, Kind.STDOUT)]
            else:
                out_r, stdout = os.pipe()
                parent_fds.append(out_r)
                child_fds.append(stdout)
                err_r, stderr = os.pipe()
                parent_fds.append(err_r)
                child_fds.append(stderr)
                self._outputs = [(out_r, Kind.STDOUT), (err_r, Kind.STDERR)]
                if req.stdin:
                    stdin, in_w = os.pipe()
                    parent_fds.append(in_w)
                    child_fds.append(stdin)
                    self._stdin_fd = in_w
                else:
                    stdin = self._service._devnull
            popen: subprocess.Popen[bytes] | None = None
            if req.tty or req.cwd is not None:
                popen = subprocess.Popen(
                    list(req.argv),
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=req.cwd,
                    env=self._env(),
                    start_new_session=True,
                    preexec_fn=preexec,
                )
                pid = popen.pid
            else:
                pid = _spawn_fast(req.argv, self._env(), stdin, stdout, stderr)
        except BaseException as err:
            for fd in parent_fds:
                os.close(fd)
            if isinstance(err, OSError):
                where = f" in {req.cwd}" if req.cwd and err.filename == req.cwd else ""
                raise RequestError(
                    "exec", f"cannot run {req.argv[0]!r}{where}: {err.strerror or err}", err.errno
                ) from err
            if isinstance(err, ValueError):
                raise RequestError("invalid", f"cannot run {req.argv[0]!r}: {err}") from err
            if isinstance(err, subprocess.SubprocessError):
                raise RequestError("exec", f"cannot run {req.argv[0]!r}: {err}") from err
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        self._started = self._loop.time()
        self.pid = pid

        def on_exit(status: int) -> None:
            if popen is not None:
                # Tell Popen, so its finalizer never waits for (or warns about) the pid.
                popen.returncode = os.waitstatus_to_exitcode(status)
            self._duration = self._loop.time() - self._started
            self.reaped = True
            if not self._status.done():
                self._status.set_result(status)

        self._service.reaper.watch(self.pid, on_exit)
        self._fds.update(parent_fds)
        for fd in parent_fds:
            os.set_blocking(fd, False)
        if req.tty or req.stdin:
            self._stdin_queue = asyncio.Queue(_STDIN_QUEUE)
        log.debug("exec %d: %s", self.pid, " ".join(req.argv)[:200])

    # -- running ----------------------------------------------------------------------------

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        self._service.killed_groups.add(self.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _abort(self) -> None:
        """The host is gone: nothing will read the output, so end the process group."""
        if not self._aborted:
            self._aborted = True
            # Once reaped, background members are left alone, as after a normal exit
            # (and the group id could, in theory, already be someone else's).
            if not self.reaped:
                log.info("exec %d: the host went away; killing its process group", self.pid)
                self.kill_group()

    def _on_timeout(self) -> None:
        if not self.reaped:
            log.info(
                "exec %d: timed out after %ss; killing its process group",
                self.pid,
                self._req.timeout,
            )
            self._timed_out = True
            self.kill_group()

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.append(task)
        return task

    async def serve(self) -> None:
        stream = self._stream
        if self._req.started:
            await write_frame(stream, Kind.STARTED, json.dumps({"pid": self.pid}).encode())
        if self._req.timeout is not None:
            self._timers.append(self._loop.call_later(self._req.timeout, self._on_timeout))
        pumps = [self._task(self._pump(fd, kind)) for fd, kind in self._outputs]
        self._task(self._control())
        if self._stdin_queue is not None:
            self._task(self._stdin_writer(self._stdin_queue))
        status = await self._status
        for timer in self._timers:
            timer.cancel()
        self._timers.append(self._loop.call_later(EXIT_OUTPUT_GRACE, self._end_output))
        await asyncio.gather(*pumps)
        if self._aborted:
            return
        exit_code, sig = _decode_status(status)
        result = {
            "exit_code": exit_code,
            "signal": sig,
            "timed_out": self._timed_out,
            "duration": round(self._duration, 6),
            "pid": self.pid,
        }
        await write_frame(stream, Kind.EXIT, json.dumps(result).encode())
        await stream.close()

    async def cleanup(self) -> None:
        if not self.reaped:
            self.kill_group()
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        # Every helper must be finished (its fd watchers removed) before the fds close,
        # or a reused descriptor number could lose its watcher.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def _end_output(self) -> None:
        self._output_closed = True
        for waiter in self._output_waiters:
            if not waiter.done():
                waiter.set_result(False)

    async def _output_ready(self, fd: int) -> bool:
        """Wait until ``fd`` is readable (True) or the output grace after exit ran out."""
        if self._output_closed:
            return False
        waiter: asyncio.Future[bool] = self._loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(True)

        self._output_waiters.add(waiter)
        self._loop.add_reader(fd, wake)
        try:
            return await waiter
        finally:
            self._loop.remove_reader(fd)
            self._output_waiters.discard(waiter)

    async def _pump(self, fd: int, kind: bytes) -> None:
        stream = self._stream
        pack = FRAME_HEADER.pack
        try:
            while True:
                try:
                    data = os.read(fd, DATA_CHUNK)
                except BlockingIOError:
                    if not await self._output_ready(fd):
                        return
                    continue
                except OSError as err:
                    if err.errno == errno.EIO:  # a pty whose slave ends are all closed
                        return
                    raise
                if not data:
                    return
                await stream.write(pack(kind, len(data)) + data)
        except VirgaError:
            self._abort()

    async def _control(self) -> None:
        """Frames from the host while the process runs."""
        queue = self._stdin_queue
        try:
            while True:
                frame = await read_frame(self._stream)
                if frame is None:  # the host closed its side: no more input
                    if queue is not None:
                        await queue.put(None)
                    return
                kind, payload = frame
                if kind == Kind.STDIN:
                    if queue is None:
                        log.warning('exec %d: STDIN without "stdin" or after END', self.pid)
                    else:
                        await queue.put(payload)
                elif kind == Kind.END:
                    if queue is not None:
                        await queue.put(None)
                        queue = None  # the writer stops taking input after this
                elif kind == Kind.SIGNAL:
                    self._signal(payload)
                elif kind == Kind.RESIZE:
                    self._resize(payload)
                else:
                    log.warning("exec %d: unexpected frame %r ignored", self.pid, kind)
        except VirgaError:
            self._abort()
        except RequestError as err:
            log.warning("exec %d: %s; no further input is read", self.pid, err)

    def _signal(self, payload: bytes) -> None:
        try:
            obj = decode_json(payload)
            sig = obj.get("signal")
            group = obj.get("group", False) is True
            if not isinstance(sig, int) or isinstance(sig, bool) or not 1 <= sig < signal.NSIG:
                raise ValueError(f"invalid signal {sig!r}")
        except ValueError as err:
            log.warning("exec %d: bad SIGNAL frame: %s", self.pid, err)
            return
        try:
            if group:
                os.killpg(self.pid, sig)
            elif not self.reaped:  # once reaped, the pid may belong to someone else
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        except OSError as err:
            log.warning("exec %d: signal %d failed: %s", self.pid, sig, err)

    def _resize(self, payload: bytes) -> None:
        try:
            obj = decode_json(payload)
            rows, cols = obj.get("rows"), obj.get("cols")
            if not all(isinstance(v, int) and 0 < v <= 0xFFFF for v in (rows, cols)):
                raise ValueError(f"invalid size {rows!r}x{cols!r}")
        except ValueError as err:
            log.warning("exec %d: bad RESIZE frame: %s", self.pid, err)
            return
        if self._master < 0:
            log.warning("exec %d: RESIZE without a TTY ignored", self.pid)
            return
        assert isinstance(rows, int)
        assert isinstance(cols, int)
        with contextlib.suppress(OSError):
            _set_winsize(self._master, rows, cols)

    async def _stdin_writer(self, queue: asyncio.Queue[bytes | None]) -> None:
        fd = self._stdin_fd
        broken = False
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            if broken or not chunk:
                continue  # keep taking input so the control reader never blocks
            try:
                await _write_fd(fd, chunk)
            except OSError:  # EPIPE: the process closed its stdin; EIO: the pty is gone
                broken = True
        if self._master >= 0:
            if not broken:
                with contextlib.suppress(OSError):
                    await _write_fd(fd, _EOF_CHAR)
        else:
            self._fds.discard(fd)
            os.close(fd)


def _resolve(program: str, env: Mapping[str, str]) -> str:
    """``program`` as ``execvpe`` would find it, searching the *child's* PATH."""
    if "/" in program:
        return program
    for directory in os.get_exec_path(env):
        path = os.path.join(directory, program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _spawn_fast(
    argv: Sequence[str], env: Mapping[str, str], stdin: int, stdout: int, stderr: int
) -> int:
    """``posix_spawn`` in a new session: the common exec (no TTY, no cwd) without
    ``subprocess``'s Python-level work, which costs tens of milliseconds under TCG.
    SIGPIPE and SIGXFSZ get their default handling back, as ``Popen`` restores them."""
    return os.posix_spawn(
        _resolve(argv[0], env),
        list(argv),
        dict(env),
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ],
        setsid=True,
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )
