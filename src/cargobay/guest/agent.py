"""The CargoBay guest agent: ``python3 -m cargobay.guest.agent [--listen ADDRESS]``.

Runs inside the VM (usually as PID 1, exec'd by ``/sbin/cargobay-init``) and imports
only the standard library, virga and ``cargobay.guest``'s agent modules; no third-party
packages, and few modules, because Python starts slowly under TCG.

It finds the virtio-serial port named ``cargobay.agent`` (``/sys/class/virtio-ports/
vport*/name`` -> ``/dev/vportNpM``, waiting for it to appear) and listens there, or on
any virga address given with ``--listen`` (tests use ``unix:`` sockets and ptys).  Each
host connection: the sync preamble (``channel.agent_sync``), then a yamux server
session; every stream the host opens is one request, served concurrently.  A host that
disconnects, or sends bytes that break yamux, ends its session only: the agent goes
back to waiting for a sync request, as often as hosts come and go (the daemon restarts
and re-adopts running VMs).  A bad request is answered with an ERROR frame; nothing a
host sends stops the agent.

As PID 1 it never exits: a failure restarts the serving loop, and ``shutdown`` ends
with a power-off (or reboot) of the guest.  Otherwise ``shutdown``, SIGTERM or SIGINT
end the agent, killing the process groups of the execs still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import Final

from cargobay.guest.agent_exec import ExecService, set_child_subreaper
from cargobay.guest.agent_files import file_list, file_read, file_stat, file_write
from cargobay.guest.channel import agent_sync, read_frame, sync_hello, write_frame
from cargobay.guest.protocol import (
    AGENT_PORT_NAME,
    AGENT_VERSION,
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
    error_from_oserror,
    parse_request,
)
from cargobay.guest.splice import SocketEnd, StreamEnd, splice
from virga.connection import listen
from virga.connection.base import Connection, Listener
from virga.errors import VirgaError
from virga.yamux import Session, Stream, YamuxConfig

__all__ = ["Agent", "find_port_device", "main", "power_off"]

log = logging.getLogger("cargobay.agent")

VIRTIO_PORTS: Final = "/sys/class/virtio-ports"
REQUEST_TIMEOUT: Final = 60.0
"""Seconds a host may take to send a stream's REQUEST frame after opening it."""
UNIX_CONNECT_TIMEOUT: Final = 10.0
"""Seconds ``unix.connect`` may take to connect to the guest's socket."""
SHUTDOWN_TEARDOWN: Final = 1.0
"""Seconds ``shutdown`` waits for the host to take its answer, and then for sessions."""
_RB_AUTOBOOT: Final = 0x01234567
_RB_POWER_OFF: Final = 0x4321FEDC


def find_port_device(
    name: str = AGENT_PORT_NAME, root: str = VIRTIO_PORTS, dev: str = "/dev"
) -> str | None:
    """``/dev/vportNpM`` of the virtio-serial port called ``name``, once it exists."""
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(root, entry, "name"), encoding="utf-8") as f:
                if f.read().strip() == name:
                    device = os.path.join(dev, entry)
                    return device if os.path.exists(device) else None
        except OSError:
            continue
    return None


async def wait_for_port(name: str = AGENT_PORT_NAME) -> str:
    """The ``serial:`` address of the port, waiting (forever) for it and its device."""
    started = time.monotonic()
    next_log = started
    while True:
        device = find_port_device(name)
        if device is not None:
            return f"serial:{device}"
        now = time.monotonic()
        if now >= next_log:
            log.info(
                "waiting for the virtio-serial port %s (%s/*/name; is virtio_console loaded?)",
                name,
                VIRTIO_PORTS,
            )
            next_log = now + 10.0
        await asyncio.sleep(0.05)


def _uptime() -> float:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def exec_environment(is_init: bool) -> dict[str, str]:
    """The environment exec'd processes start from (a request's env is added to it).

    As PID 1 the agent has the kernel's bare environment plus what cargobay-init set to
    start the agent itself: PYTHONPATH (the agent's own library) is dropped, and HOME is
    root's home instead of the kernel's "/".
    """
    env = dict(os.environ)
    if is_init:
        env.pop("PYTHONPATH", None)
        if os.geteuid() == 0 and env.get("HOME", "/") == "/":
            env["HOME"] = "/root"
    return env


class Agent:
    """Serves host connections on one address until ``shutdown`` (or a signal)."""

    def __init__(self, address: str | None, *, is_init: bool | None = None) -> None:
        self.address = address
        self.is_init = os.getpid() == 1 if is_init is None else is_init
        self.shutdown_request: ShutdownRequest | None = None
        self.exec = ExecService(exec_environment(self.is_init))
        self._stop = asyncio.Event()
        self._connections: set[asyncio.Task[None]] = set()
        self._yamux = YamuxConfig()

    async def run(self) -> ShutdownRequest | None:
        """Serve until stopped; returns the shutdown request, if that is what stopped it."""
        loop = asyncio.get_running_loop()
        self.exec.start(loop)
        if not self.is_init:
            if not set_child_subreaper():
                log.warning("cannot become a child subreaper: orphans are not reaped here")
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            address = self.address or await wait_for_port()
            listener = await self._listen(address)
            log.info(
                "agent %s (protocol %d) listening on %s", AGENT_VERSION, PROTOCOL_VERSION, address
            )
            accepting = loop.create_task(self._accept_loop(listener))
            try:
                await self._stop.wait()
            finally:
                accepting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await accepting
                await listener.close()
                for task in list(self._connections):
                    task.cancel()
                if self.shutdown_request is not None and self._connections:
                    # Closing a session says GoAway, which a host that already left (as
                    # it does after shutdown) never takes off a serial port: do not wait
                    # for that flush; asyncio.run cancels what is left.
                    await asyncio.wait(self._connections, timeout=SHUTDOWN_TEARDOWN)
                else:
                    await asyncio.gather(*self._connections, return_exceptions=True)
        finally:
            await self.exec.stop(loop)
            if not self.is_init:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        return self.shutdown_request

    async def _listen(self, address: str) -> Listener:
        while True:
            try:
                return await listen(address)
            except VirgaError as err:
                if not self.is_init:
                    raise
                log.error("cannot listen on %s: %s; retrying", address, err)
                await asyncio.sleep(1.0)

    async def _accept_loop(self, listener: Listener) -> None:
        while True:
            try:
                conn = await listener.accept()
            except VirgaError as err:
                # A serial device can fail to reopen for a while; never spin, never stop.
                log.warning("accepting on %s failed: %s", listener.description, err)
                await asyncio.sleep(1.0)
                continue
            task = asyncio.get_running_loop().create_task(self._connection(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _connection(self, conn: Connection) -> None:
        session: Session | None = None
        requests: set[asyncio.Task[None]] = set()
        try:
            await conn.write_all(sync_hello())
            synced, _ = await agent_sync(conn)
            log.info("host connected on %s", conn.description)
            session = Session.server(synced, self._yamux)
            while True:
                stream = await session.accept_stream()
                task = asyncio.get_running_loop().create_task(self._request(stream))
                requests.add(task)
                task.add_done_callback(requests.discard)
        except VirgaError as err:
            # Before the sync it is no session: a virtio-serial port whose host end is a
            # listening socket nobody connected to reads as opened-then-closed, every few
            # seconds (seen under libvirt); that is not worth a console line each time.
            level = logging.INFO if session is not None else logging.DEBUG
            log.log(level, "host disconnected from %s (%s)", conn.description, err)
        except Exception:
            log.exception("connection %s failed", conn.description)
        finally:
            for task in list(requests):
                task.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
            with contextlib.suppress(VirgaError, OSError):
                if session is not None:
                    await session.close()
                else:
                    await conn.close()

    async def _request(self, stream: Stream) -> None:
        try:
            stream.set_read_deadline(REQUEST_TIMEOUT)
            frame = await read_frame(stream)
            stream.set_read_deadline(None)
            if frame is None:
                return
            kind, payload = frame
            if kind != Kind.REQUEST:
                raise RequestError("protocol", f"the first frame must be a REQUEST, not {kind!r}")
            await self._dispatch(stream, parse_request(payload))
        except RequestError as err:
            await self._error(stream, err)
        except VirgaError as err:
            log.debug("stream %d: %s", stream.stream_id, err)
        except OSError as err:
            await self._error(stream, error_from_oserror(err, "the request failed"))
        except Exception as err:
            log.exception("internal error serving stream %d", stream.stream_id)
            await self._error(stream, RequestError("internal", f"{type(err).__name__}: {err}"))
        finally:
            with contextlib.suppress(VirgaError):
                await stream.close()

    async def _error(self, stream: Stream, err: RequestError) -> None:
        log.info("request failed (%s): %s", err.kind, err.message)
        with contextlib.suppress(VirgaError):
            await write_frame(stream, Kind.ERROR, json.dumps(err.payload()).encode())

    async def _dispatch(self, stream: Stream, req: Request) -> None:
        if isinstance(req, ExecRequest):
            await self.exec.run(stream, req)
        elif isinstance(req, FileReadRequest):
            await file_read(stream, req)
        elif isinstance(req, FileWriteRequest):
            await file_write(stream, req)
        elif isinstance(req, FileStatRequest):
            await file_stat(stream, req)
        elif isinstance(req, FileListRequest):
            await file_list(stream, req)
        elif isinstance(req, InfoRequest):
            await self._info(stream, req)
        elif isinstance(req, ShutdownRequest):
            await self._shutdown(stream, req)
        elif isinstance(req, UnixConnectRequest):
            await unix_connect(stream, req)

    async def _info(self, stream: Stream, req: InfoRequest) -> None:
        uname = os.uname()
        result = {
            "protocol": PROTOCOL_VERSION,
            "agent_version": AGENT_VERSION,
            "hostname": uname.nodename,
            "kernel": uname.release,
            "uptime": _uptime(),
            "pid": os.getpid(),
            "python": sys.version.split()[0],
        }
        await write_frame(stream, Kind.RESULT, json.dumps(result).encode())

    async def _shutdown(self, stream: Stream, req: ShutdownRequest) -> None:
        log.info("%s requested by the host", "reboot" if req.reboot else "shutdown")
        self.shutdown_request = req
        try:
            await write_frame(stream, Kind.RESULT, b"{}")
            await stream.close()
            # The host closes its side once it has read the answer: wait (briefly) for
            # that, so the answer is not lost in a buffer when the guest goes down.
            with contextlib.suppress(VirgaError, TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TEARDOWN):
                    while await stream.read():
                        pass
        finally:
            # Even when the host's leaving cancels this request (its session ended).
            self._stop.set()


async def unix_connect(stream: Stream, req: UnixConnectRequest) -> None:
    """Connect to the guest's Unix socket ``req.path``, answer, then splice the stream
    and the socket until both directions ended (or either side broke)."""
    try:
        async with asyncio.timeout(UNIX_CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(req.path)
    except TimeoutError as err:
        raise RequestError(
            "io", f"connecting to {req.path}: no answer within {UNIX_CONNECT_TIMEOUT}s"
        ) from err
    except OSError as err:
        raise error_from_oserror(err, f"connecting to {req.path}") from err
    end = SocketEnd(reader, writer)
    try:
        await write_frame(stream, Kind.RESULT, b"{}")
    except BaseException:
        await end.abort()
        raise
    result = await splice(StreamEnd(stream), end)
    if result.error is not None:
        log.debug("unix.connect %s ended: %s", req.path, result.error)


def _reap_all() -> bool:
    """Reap every exited child; False once no child is left at all."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        return False
    return True


def power_off(reboot: bool) -> None:
    """As PID 1: stop every process, sync, and power off (or reboot) the guest.

    Returns only if that failed (the caller keeps serving; the host can still stop
    the VM).  /proc/sysrq-trigger is used only when libc cannot be loaded at all.
    """
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGTERM)
    # As PID 1 every process ends up our child (orphans are re-parented to us), so
    # "no child left" means everything has stopped.
    deadline = time.monotonic() + 2.0
    while _reap_all() and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)
    _reap_all()
    os.sync()
    command = _RB_AUTOBOOT if reboot else _RB_POWER_OFF
    log.info("%s now", "rebooting" if reboot else "powering off")
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        reboot_call = libc.reboot
    except (ImportError, OSError, AttributeError) as err:
        log.warning("no reboot(2) from libc (%s): using /proc/sysrq-trigger", err)
        with open("/proc/sysrq-trigger", "w", encoding="ascii") as f:
            f.write("b" if reboot else "o")
        return
    if reboot_call(command) != 0:
        log.error("reboot(2) failed: %s; the guest stays up", os.strerror(ctypes.get_errno()))


_USAGE = f"""usage: python3 -m cargobay.guest [--listen ADDRESS] [--debug]

The CargoBay guest agent.
  --listen ADDRESS  a virga address (default: the virtio-serial port named {AGENT_PORT_NAME})
  --debug           log at DEBUG level
"""


class _Args:
    """The agent's two options, parsed by hand: argparse costs ~0.1 s of a TCG boot."""

    def __init__(self, argv: list[str]) -> None:
        self.listen: str | None = None
        self.debug = False
        args = list(argv)
        while args:
            arg = args.pop(0)
            if arg in ("-h", "--help"):
                sys.stdout.write(_USAGE)
                raise SystemExit(0)
            if arg == "--debug":
                self.debug = True
            elif arg == "--listen" and args:
                self.listen = args.pop(0)
            elif arg.startswith("--listen="):
                self.listen = arg.partition("=")[2]
            else:
                sys.stderr.write(f"{_USAGE}error: unexpected argument {arg!r}\n")
                raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = _Args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.INFO,
        format="cargobay-agent: %(levelname)s %(message)s",
    )
    if os.getpid() != 1:
        asyncio.run(Agent(args.listen).run())
        return 0
    while True:  # PID 1 must never exit: the kernel would panic
        try:
            request = asyncio.run(Agent(args.listen, is_init=True).run())
        except Exception:
            log.exception("the agent failed; restarting it")
            time.sleep(1.0)
            continue
        if request is not None:
            try:
                power_off(request.reboot)
            except Exception:
                log.exception("power off failed")
            time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
