"""The daemon's Docker socket forwarders: start, list, stop; all closed with the daemon.

The forwarders live in the daemon because the daemon holds each machine's one guest
agent connection (a virtio-serial port takes a single host): every client connection
on a machine's forwarder becomes a new yamux stream on that connection.  A forwarder
to the host's engine needs nothing from the daemon but lives here too, so that both
kinds are listed and stopped the same way.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cargobay.dockersock.listener import Forwarder
from cargobay.dockersock.models import (
    DockerSocketCreate,
    DockerSocketInfo,
    check_target,
    forwarder_id,
    resolve_socket_path,
)
from cargobay.dockersock.targets import GuestSockets, HostEngine, MachineEngine, host_engine
from cargobay.errors import DockerSocketInUse, InvalidInput, NotFound

__all__ = ["DockerSocketService"]

log = logging.getLogger("cargobay.dockersock")


class DockerSocketService:
    def __init__(self, machines: GuestSockets, runtime: Path) -> None:
        self._machines = machines
        self._runtime = runtime
        self._forwarders: dict[str, tuple[Forwarder, DockerSocketCreate]] = {}
        self._lock = asyncio.Lock()

    async def start(self, body: DockerSocketCreate) -> DockerSocketInfo:
        """Check the target (the machine runs and has dockerd, up within ``body.wait``
        seconds; or the host engine's address is usable), claim the socket, listen."""
        check_target(body)
        path = resolve_socket_path(body.socket, self._runtime, body.vm)
        async with self._lock:
            ident = forwarder_id(path)
            if ident in self._forwarders:
                raise DockerSocketInUse(
                    f"{path} is already a docker socket of this daemon; stop it first "
                    f"(`cargobay docker-socket --stop {path}`)"
                )
            target: HostEngine | MachineEngine
            if body.vm:
                target = MachineEngine(self._machines, body.vm)
                self._machines.get_machine(body.vm)  # NotFound first
                await target.wait_ready(body.wait)
            else:
                target = host_engine()
                if target.listens_on(path):
                    raise InvalidInput(
                        f"the host's Docker engine is found at {target.url}, the socket to "
                        "create: it would forward to itself; give another --socket"
                    )
                probe = await target.open()  # EngineUnavailable now rather than per client
                await probe.close()
            forwarder = Forwarder(path, target.open, target.url)
            await forwarder.start()
            self._forwarders[ident] = (forwarder, body)
        return self._info(ident)

    def list_sockets(self) -> list[DockerSocketInfo]:
        return [self._info(ident) for ident in sorted(self._forwarders)]

    def get(self, ident: str) -> DockerSocketInfo:
        if ident not in self._forwarders:
            raise NotFound(
                f"no docker socket {ident!r}; `cargobay docker-socket --list` shows them"
            )
        return self._info(ident)

    async def stop(self, ident: str) -> None:
        """Close the socket (and every connection through it) and remove its file."""
        async with self._lock:
            entry = self._forwarders.pop(ident, None)
        if entry is None:
            raise NotFound(
                f"no docker socket {ident!r}; `cargobay docker-socket --list` shows them"
            )
        await entry[0].close()

    async def close(self) -> None:
        for ident in list(self._forwarders):
            forwarder, _ = self._forwarders.pop(ident)
            await forwarder.close()

    def _info(self, ident: str) -> DockerSocketInfo:
        forwarder, body = self._forwarders[ident]
        return DockerSocketInfo(
            id=ident,
            socket=forwarder.path,
            docker_host=f"unix://{forwarder.path}",
            target="vm" if body.vm else "host",
            vm=body.vm,
            upstream=forwarder.description,
            created_at=forwarder.created_at,
            connections=forwarder.connections,
            active=forwarder.active,
            bytes_in=forwarder.bytes_in,
            bytes_out=forwarder.bytes_out,
        )
