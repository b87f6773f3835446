"""The Docker socket forwarder's API models, and the checks on a request.

A forwarder is one Unix socket that speaks the Docker Engine API because every byte a
client sends is passed to an engine and back: the engine inside a CargoBay machine
(``vm``) or the host's own (``host_engine``).  Exactly one of the two is given.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from cargobay.errors import InvalidInput

__all__ = [
    "GUEST_DOCKER_SOCKET",
    "MAX_SOCKET_PATH",
    "DockerSocketCreate",
    "DockerSocketInfo",
    "check_target",
    "default_socket_path",
    "forwarder_id",
    "resolve_socket_path",
]

GUEST_DOCKER_SOCKET: Final = "/run/docker.sock"
"""Where dockerd listens inside a machine of the ``docker`` image (cargobay-init)."""
MAX_SOCKET_PATH: Final = 107
"""The longest Unix socket path Linux takes (sun_path is 108 bytes with the NUL)."""


class DockerSocketCreate(BaseModel):
    """``POST /v1/docker-sockets``."""

    model_config = ConfigDict(extra="forbid")
    vm: str | None = Field(default=None, description="forward to the Docker engine in this machine")
    host_engine: bool = Field(
        default=False, description="forward to the host's Docker engine (found as docker finds it)"
    )
    socket: str | None = Field(
        default=None,
        description="absolute path of the socket to create; default "
        "<runtime>/docker-<vm>.sock or <runtime>/docker-host.sock",
    )
    wait: float = Field(
        default=60.0,
        ge=0,
        le=600,
        description="seconds to wait for dockerd in the machine to come up (it starts with "
        "the machine; 10-30 s under TCG)",
    )


class DockerSocketInfo(BaseModel):
    """A running forwarder."""

    id: str
    socket: str
    docker_host: str = Field(description="the DOCKER_HOST value for this socket")
    target: Literal["vm", "host"]
    vm: str | None = None
    upstream: str = Field(description="where the bytes go: a URL, or vm:NAME:/run/docker.sock")
    created_at: datetime
    connections: int = Field(description="client connections accepted so far")
    active: int = Field(description="client connections open now")
    bytes_in: int = Field(description="bytes from clients to the engine")
    bytes_out: int = Field(description="bytes from the engine to clients")


def forwarder_id(socket: str) -> str:
    """A forwarder's id: short, stable, derived from its socket path."""
    return hashlib.sha256(socket.encode()).hexdigest()[:12]


def default_socket_path(runtime: Path, vm: str | None) -> str:
    return str(runtime / (f"docker-{vm}.sock" if vm else "docker-host.sock"))


def resolve_socket_path(requested: str | None, runtime: Path, vm: str | None) -> str:
    """The socket path to use, checked: absolute, short enough, in an existing directory."""
    path = requested if requested else default_socket_path(runtime, vm)
    if "\0" in path:
        raise InvalidInput("bad value for 'socket': it contains a NUL character")
    if not os.path.isabs(path):
        raise InvalidInput(f"bad value for 'socket': {path!r} is not an absolute path")
    path = os.path.normpath(path)
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"bad value for 'socket': {path!r} is {len(path.encode())} bytes; a Unix socket "
            f"path may have at most {MAX_SOCKET_PATH}: pick a shorter one"
        )
    if path == "/" or path.endswith("/"):
        raise InvalidInput(f"bad value for 'socket': {path!r} names a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        if requested:
            raise InvalidInput(
                f"bad value for 'socket': the directory {parent} does not exist; create it first"
            )
        os.makedirs(parent, mode=0o700, exist_ok=True)
    return path


def check_target(body: DockerSocketCreate) -> None:
    """Exactly one target: a machine or the host's engine."""
    if body.vm and body.host_engine:
        raise InvalidInput("give either a machine (vm) or host_engine, not both")
    if not body.vm and not body.host_engine:
        raise InvalidInput(
            "nothing to forward to: give a machine (--vm NAME, a machine made from the "
            "'docker' image) or --host-engine"
        )
