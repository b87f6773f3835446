"""``cargobayd``: the daemon process.  Serves the API on a private Unix socket.

    cargobayd [--log-level info] [--listen-tcp HOST:PORT]   (or: python -m cargobay.daemon.server)

Startup, in order:

1. take an exclusive lock on the pid file (``Paths.daemon_pidfile``) and write our pid:
   a second daemon for the same home refuses to start (exit status 1) instead of
   fighting over the socket; a daemon killed with SIGKILL releases the lock with its
   file descriptor, so a stale pid file never blocks a restart;
2. replace any stale socket and bind ``Paths.daemon_socket`` with mode 0600 (the
   runtime directory is 0700), before anything listens on it;
3. open the store (migrating it), then serve; the app's lifespan re-adopts the machines
   a previous daemon left running.

``--listen-tcp HOST:PORT`` (or ``CARGOBAY_LISTEN_TCP``) also serves the API and the web
GUI on TCP; every request there needs the token of ``<state>/ui-token`` (made at the first
start, 0600), see :mod:`cargobay.daemon.webui.auth`.  Port 0 picks a free port
(``GET /v1/daemon/ui`` says which).

SIGTERM/SIGINT or ``POST /v1/daemon/shutdown`` end the daemon (exit status 0, socket and
pid file removed); VMs keep running and are adopted by the next one.  Logs go to
``Paths.daemon_log`` (and to a terminal on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import uvicorn
from starlette.types import ASGIApp

from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.errors import CargoBayError
from cargobay.hypervisors.base import Hypervisor
from cargobay.machines.agent import AgentConnector
from cargobay.paths import Paths

__all__ = ["main", "serve"]

log = logging.getLogger("cargobay.daemon")


class AlreadyRunning(Exception):
    def __init__(self, pid: str) -> None:
        super().__init__(f"cargobayd is already running (pid {pid or 'unknown'})")


def _lock_pidfile(path: Path) -> IO[str]:
    """Open, lock and fill the pid file; the returned file keeps the lock while open."""
    f = path.open("a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise AlreadyRunning(pid) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _bind_socket(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _configure_logging(paths: Paths, level: str) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: logging.Handler = logging.FileHandler(paths.daemon_log)
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if sys.stderr.isatty():
        console = logging.StreamHandler()
        console.setFormatter(fmt)
        root.addHandler(console)
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def default_components(
    paths: Paths,
) -> tuple[Callable[[str], Hypervisor], DaemonImages, AgentConnector]:
    """The real hypervisor factory, image store and agent connector."""
    from cargobay import hypervisors
    from cargobay.machines.agent import GuestAgentConnector

    with contextlib.suppress(ImportError):
        importlib.import_module("cargobay.hypervisors.qemu")  # registers "qemu"
    return hypervisors.get, DaemonImages(paths), GuestAgentConnector()


def _note_signal(signum: int, frame: object) -> None:
    log.info("stopped by %s", signal.Signals(signum).name)


def _bind_tcp(address: str) -> socket.socket:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad --listen-tcp {address!r}: use HOST:PORT, like 127.0.0.1:8765")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    except BaseException:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(paths: Paths, listen_tcp: str | None = None) -> None:
    """Run the daemon until it is asked to stop."""
    from cargobay.machines.service import MachineService
    from cargobay.store import Store

    paths.ensure()
    os.chmod(paths.runtime, 0o700)
    pidfile = _lock_pidfile(paths.daemon_pidfile)
    sock: socket.socket | None = None
    tcp: socket.socket | None = None
    store: Store | None = None
    try:
        sock = _bind_socket(paths.daemon_socket)
        tcp = _bind_tcp(listen_tcp) if listen_tcp else None
        store = Store.open(paths.db)
        if store.upgraded_from is not None:
            log.info(
                "upgraded the store from schema %d to %d (backup: %s)",
                store.upgraded_from,
                store.schema_version,
                store.backup_path,
            )
        hypervisor_factory, images, connector = default_components(paths)
        service = MachineService(paths, store, hypervisor_factory, images, connector)
        state = DaemonState(paths=paths, service=service, images=images)
        app = create_app(state)
        served: ASGIApp = app
        if tcp is not None:
            from cargobay.daemon.webui.auth import TOKEN_FILE, TokenGuard, load_or_create_token
            from cargobay.daemon.webui.routes import UiAccess

            token_file = paths.state / TOKEN_FILE
            token = load_or_create_token(token_file)
            host, port = tcp.getsockname()[:2]
            address = f"http://{f'[{host}]' if ':' in host else host}:{port}"
            app.state.ui_access = UiAccess(address, token, token_file)
            served = TokenGuard(app, token, token_file)
            log.info("also listening on %s (token in %s); web UI at %s/ui/", address,
                     token_file, address)  # fmt: skip
        config = uvicorn.Config(
            served,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)

        def request_shutdown() -> None:
            log.info("shutdown requested through the API")
            server.should_exit = True

        state.request_shutdown = request_shutdown
        # uvicorn handles SIGTERM/SIGINT itself and, once it has shut down, raises the
        # signal again with the handlers it found: these make that a clean exit, so the
        # socket and pid file below are removed.
        signal.signal(signal.SIGTERM, _note_signal)
        signal.signal(signal.SIGINT, _note_signal)
        log.info("cargobayd %d listening on %s", os.getpid(), paths.daemon_socket)
        await server.serve(sockets=[sock] if tcp is None else [sock, tcp])
        if not server.started:
            raise CargoBayError("cargobayd failed to start; see the log above")
    finally:
        if tcp is not None:
            tcp.close()
        if sock is not None:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                paths.daemon_socket.unlink()
        if store is not None:
            store.close()
        with contextlib.suppress(FileNotFoundError):
            paths.daemon_pidfile.unlink()
        pidfile.close()
        log.info("cargobayd %d stopped", os.getpid())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cargobayd",
        description="The CargoBay daemon: serves the API on a Unix socket "
        "(CARGOBAY_HOME / XDG directories decide where).",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CARGOBAY_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    parser.add_argument(
        "--listen-tcp",
        metavar="HOST:PORT",
        default=os.environ.get("CARGOBAY_LISTEN_TCP") or None,
        help="also serve the API and the web UI on TCP (every request needs the token in "
        "<state>/ui-token); e.g. 127.0.0.1:8765",
    )
    args = parser.parse_args(argv)
    paths = Paths.from_env()
    try:
        _configure_logging(paths, args.log_level)
        asyncio.run(serve(paths, args.listen_tcp))
    except AlreadyRunning as err:
        print(f"cargobayd: {err}", file=sys.stderr)
        return 1
    except (CargoBayError, OSError, ValueError) as err:
        log.error("%s", err)
        print(f"cargobayd: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
