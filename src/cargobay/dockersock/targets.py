"""Where a Docker socket forwarder sends its bytes: the host's engine, or a machine's.

``HostEngine`` opens a plain connection to the engine endpoint found the way the
Docker CLI finds it (``cargobay.containers.detect``): a ``unix://`` socket or a
``tcp://`` address (TLS and ssh endpoints are refused: bytes cannot be passed through
to them unchanged).  ``MachineEngine`` opens, per connection, one yamux stream over the
machine's guest agent channel to the guest's ``/run/docker.sock`` (the agent's
``unix.connect``).  Both raise ``CargoBayError``s that say what to do.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from cargobay.containers.detect import resolve_endpoint
from cargobay.containers.settings import load_settings
from cargobay.dockersock.models import GUEST_DOCKER_SOCKET
from cargobay.errors import EngineUnavailable, GuestError, InvalidInput, NoDockerEngine
from cargobay.guest.splice import ByteEnd, SocketEnd, StreamEnd

__all__ = ["CONNECT_TIMEOUT", "GuestSockets", "HostEngine", "MachineEngine", "host_engine"]

CONNECT_TIMEOUT: Final = 10.0
DOCKER_PACKAGE: Final = "docker.io"
DOCKERD_LOG: Final = "/run/cargobay/dockerd.log"


class HostEngine:
    """The host's engine at ``url`` (``unix:///path`` or ``tcp://host:port``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.unix_path: str | None = None
        self._tcp: tuple[str, int] | None = None
        if parts.scheme == "unix" and parts.path:
            self.unix_path = parts.path
        elif parts.scheme in ("tcp", "http") and parts.hostname:
            self._tcp = (parts.hostname, parts.port or 2375)
        else:
            raise InvalidInput(
                f"the host's Docker engine is at {url!r}; only unix:// and tcp:// engines "
                "can be forwarded (not TLS, ssh or named pipes)"
            )
        if self._tcp is not None and os.environ.get("DOCKER_TLS_VERIFY"):
            raise InvalidInput(
                f"the host's Docker engine at {url} uses TLS (DOCKER_TLS_VERIFY); "
                "a byte forwarder cannot pass TLS through: point DOCKER_HOST at it directly"
            )

    def listens_on(self, path: str) -> bool:
        """Whether the engine is the Unix socket ``path`` (forwarding there would loop)."""
        return self.unix_path is not None and os.path.normpath(self.unix_path) == path

    async def open(self) -> ByteEnd:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self.unix_path is not None:
                    reader, writer = await asyncio.open_unix_connection(self.unix_path)
                else:
                    assert self._tcp is not None
                    reader, writer = await asyncio.open_connection(*self._tcp)
        except (OSError, TimeoutError) as err:
            raise EngineUnavailable(
                f"the host's Docker engine at {self.url} does not answer ({err or 'timeout'}); "
                "is dockerd running?"
            ) from err
        return SocketEnd(reader, writer)


def host_engine(url: str | None = None) -> HostEngine:
    """The host's engine: ``url``, else ``docker_host`` of the container settings (as the
    daemon's engine endpoints use), else the endpoint the Docker CLI would use."""
    return HostEngine(url or load_settings().docker_host or resolve_endpoint().url)


class GuestSockets(Protocol):
    """What ``MachineEngine`` needs from ``cargobay.machines.service.MachineService``."""

    def get_machine(self, name: str) -> Any: ...

    @property
    def images(self) -> Any: ...

    async def open_guest_socket(self, name: str, path: str) -> Any: ...


class MachineEngine:
    """dockerd inside machine ``name``, reached through its guest agent."""

    def __init__(self, machines: GuestSockets, name: str) -> None:
        self.machines = machines
        self.name = name
        self.url = f"vm:{name}:{GUEST_DOCKER_SOCKET}"

    def has_docker(self) -> bool | None:
        """Whether the machine's image has the Docker engine (None: cannot tell)."""
        try:
            vm = self.machines.get_machine(self.name)
            manifest = self.machines.images.get(vm.config.image)
        except Exception:
            return None
        return DOCKER_PACKAGE in manifest.packages

    def check_image(self) -> None:
        """``NoDockerEngine`` if the machine's image has no Docker engine at all."""
        if self.has_docker() is False:
            vm = self.machines.get_machine(self.name)
            raise NoDockerEngine(
                f"machine {self.name!r} has no Docker engine: its image {vm.config.image!r} "
                "lacks docker.io; build the 'docker' image (`cargobay image build docker`) "
                "and create a machine from it (`cargobay vm create NAME --image docker`)"
            )

    async def open(self) -> ByteEnd:
        try:
            stream = await self.machines.open_guest_socket(self.name, GUEST_DOCKER_SOCKET)
        except GuestError as err:
            if getattr(err, "kind", None) in ("not_found", "io"):
                self.check_image()
                raise NoDockerEngine(
                    f"dockerd in machine {self.name!r} does not answer on "
                    f"{GUEST_DOCKER_SOCKET} ({err}); it starts with the machine and takes "
                    f"10-30 s under TCG; if it failed, see `cargobay vm exec {self.name} -- "
                    f"cat {DOCKERD_LOG}`"
                ) from err
            if getattr(err, "kind", None) == "protocol":
                raise NoDockerEngine(
                    f"the guest agent of machine {self.name!r} cannot forward sockets ({err}); "
                    "rebuild its image (`cargobay image build docker`) and recreate the machine"
                ) from err
            raise
        return StreamEnd(stream)

    async def wait_ready(self, timeout: float) -> None:
        """Open (and close) a connection until dockerd answers, or ``timeout`` passes:
        raises the last error then."""
        self.check_image()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                end = await self.open()
            except NoDockerEngine:
                if loop.time() >= deadline or self.has_docker() is False:
                    raise
                await asyncio.sleep(0.5)
                continue
            await end.close()
            return
