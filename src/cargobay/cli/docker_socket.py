"""``cargobay docker-socket``: a Docker Engine API socket for ``DOCKER_HOST``.

    cargobay docker-socket --vm NAME [--socket PATH] [--wait S] [--detach]
    cargobay docker-socket --host-engine [--socket PATH] [--detach]
    cargobay docker-socket --list [--json]
    cargobay docker-socket --stop PATH|ID

cargobayd listens on the socket (default ``<runtime>/docker-NAME.sock``) and passes each
connection, byte for byte, to dockerd inside machine NAME (a machine of the ``docker``
image: ``cargobay image build docker``, ``cargobay vm create NAME --image docker``) or to
the host's own engine.  The command prints ``export DOCKER_HOST=unix://PATH`` and keeps
the socket until Ctrl-C (or SIGTERM), then removes it; ``--detach`` leaves it with the
daemon (until ``--stop`` or the daemon stops).  The socket is mode 0600: only the
daemon's user can use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Annotated, Any

import typer

from cargobay.cli.output import Format, emit_document, note, pick_format, print_table
from cargobay.cli.session import connect
from cargobay.errors import InvalidInput, NotFound

__all__ = ["docker_socket"]

POLL_INTERVAL = 2.0
"""Seconds between checks that the daemon still has the socket (foreground mode)."""


def _sockets() -> Any:
    from cargobay.sdk.docker_sockets import DockerSocketsClient

    return DockerSocketsClient(connect())


def check_options(
    vm: str | None, host_engine: bool, listing: bool, stop: str | None, detach: bool
) -> None:
    """Exactly one action; a forwarder has exactly one target."""
    if listing and stop:
        raise InvalidInput("give --list or --stop, not both")
    if listing or stop:
        if vm or host_engine or detach:
            raise InvalidInput(
                f"--{'list' if listing else 'stop'} takes no --vm, --host-engine or --detach"
            )
        return
    if vm and host_engine:
        raise InvalidInput("give --vm NAME or --host-engine, not both")
    if not vm and not host_engine:
        raise InvalidInput(
            "say where to forward to: --vm NAME (a machine of the 'docker' image) or --host-engine"
        )


def _find(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    path = os.path.abspath(key) if "/" in key else None
    for entry in entries:
        if entry["id"] == key or (path is not None and entry["socket"] == path):
            return entry
    raise NotFound(f"no docker socket {key!r}; `cargobay docker-socket --list` shows them")


def _list(out: Format) -> None:
    entries = _sockets().list()
    if out is not Format.TABLE:
        emit_document(entries, out)
        return
    if not entries:
        note("no docker sockets; start one with `cargobay docker-socket --vm NAME`")
        return
    print_table(
        ["ID", "SOCKET", "TARGET", "UPSTREAM", "CONNECTIONS", "ACTIVE"],
        [
            [
                e["id"],
                e["socket"],
                e["vm"] or "host",
                e["upstream"],
                str(e["connections"]),
                str(e["active"]),
            ]
            for e in entries
        ],
    )


def _catch_stop_signals() -> tuple[threading.Event, dict[int, Any]]:
    """Ctrl-C and SIGTERM set the returned event (and the previous handlers to restore).

    The signals only set an event: raising from the handler could interrupt an HTTP
    call halfway and leave the client's connection pool locked, so that the final
    ``delete`` hung (a CI run saw it under load).  They are caught from before the
    ``export DOCKER_HOST`` line is printed, so a Ctrl-C right after it is not lost."""
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous: dict[int, Any] = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    return stopped, previous


def _wait_foreground(
    sockets: Any, ident: str, stopped: threading.Event, previous: dict[int, Any]
) -> None:
    """Until Ctrl-C/SIGTERM (then stop the socket) or the daemon dropped it."""
    try:
        while not stopped.wait(POLL_INTERVAL):
            try:
                sockets.get(ident)
            except NotFound:
                note("the daemon no longer has the socket (stopped elsewhere); exiting")
                return
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    with contextlib.suppress(NotFound):
        sockets.delete(ident)
    note("docker socket removed")


def docker_socket(
    vm: Annotated[
        str | None,
        typer.Option("--vm", metavar="NAME", help="Forward to dockerd in this machine."),
    ] = None,
    host_engine: Annotated[
        bool, typer.Option("--host-engine", help="Forward to the host's Docker engine.")
    ] = False,
    socket_path: Annotated[
        str | None,
        typer.Option(
            "--socket",
            metavar="PATH",
            help="The socket to create (default <runtime dir>/docker-NAME.sock).",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, max=600, help="Seconds to wait for dockerd in the machine."),
    ] = 60.0,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave the socket with the daemon and exit.")
    ] = False,
    listing: Annotated[bool, typer.Option("--list", help="List the docker sockets.")] = False,
    stop: Annotated[
        str | None,
        typer.Option("--stop", metavar="PATH|ID", help="Remove a docker socket."),
    ] = None,
    fmt: Annotated[
        Format | None, typer.Option("--format", "-o", help="table (default), json or yaml.")
    ] = None,
    json_flag: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """A Docker Engine API socket (for DOCKER_HOST) forwarding to a machine's dockerd or
    the host's engine."""
    check_options(vm, host_engine, listing, stop, detach)
    out = pick_format(fmt, json_flag)
    if listing:
        _list(out)
        return
    sockets = _sockets()
    if stop is not None:
        entry = _find(sockets.list(), stop)
        sockets.delete(entry["id"])
        note(f"docker socket {entry['socket']} removed")
        return
    path = os.path.abspath(socket_path) if socket_path else None
    if vm:
        note(f"waiting for dockerd in machine {vm} (up to {wait:.0f} s) ...")
    info = sockets.create(vm=vm, host_engine=host_engine, socket=path, wait=wait)
    stopped, previous = _catch_stop_signals() if not detach else (threading.Event(), {})
    if out is not Format.TABLE:
        emit_document(info, out)
    else:
        typer.echo(f"export DOCKER_HOST={info['docker_host']}")
    sys.stdout.flush()
    if detach:
        note(f"the socket stays until `cargobay docker-socket --stop {info['socket']}`")
        return
    note(f"forwarding {info['socket']} to {info['upstream']}; Ctrl-C to stop")
    _wait_foreground(sockets, info["id"], stopped, previous)
