"""The machine model of seed 004 in Python form: ``VMInstance``, ``VMConfig``, ``VMState``.

``VMState`` is a kind plus, for ``ERROR``, a reason (the seed's ``Error(String)``).
Allowed transitions are the seed's state machine, plus the edges a real lifecycle needs
(a stopped machine can be booted again; any state can fail into ERROR; a failed machine
can be stopped to clean up):

    CREATING -> RUNNING | ERROR | STOPPED
    RUNNING  -> PAUSED | STOPPING | ERROR
    PAUSED   -> RUNNING | STOPPING | ERROR
    STOPPING -> STOPPED | ERROR
    STOPPED  -> CREATING
    ERROR    -> STOPPING | STOPPED | CREATING
"""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cargobay.errors import Conflict, InvalidInput
from cargobay.machines.attachments import Attachment
from cargobay.machines.shares import ShareSpec

__all__ = [
    "NAME_RE",
    "PortForward",
    "RuntimeInfo",
    "VMConfig",
    "VMInstance",
    "VMState",
    "VMStateKind",
    "check_transition",
    "parse_port",
    "parse_size_mb",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class VMStateKind(enum.StrEnum):
    CREATING = "creating"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


_ALLOWED: dict[VMStateKind, frozenset[VMStateKind]] = {
    VMStateKind.CREATING: frozenset({VMStateKind.RUNNING, VMStateKind.ERROR, VMStateKind.STOPPED}),
    VMStateKind.RUNNING: frozenset({VMStateKind.PAUSED, VMStateKind.STOPPING, VMStateKind.ERROR}),
    VMStateKind.PAUSED: frozenset({VMStateKind.RUNNING, VMStateKind.STOPPING, VMStateKind.ERROR}),
    VMStateKind.STOPPING: frozenset({VMStateKind.STOPPED, VMStateKind.ERROR}),
    VMStateKind.STOPPED: frozenset({VMStateKind.CREATING}),
    VMStateKind.ERROR: frozenset({VMStateKind.STOPPING, VMStateKind.STOPPED, VMStateKind.CREATING}),
}


class VMState(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: VMStateKind
    reason: str | None = None

    @classmethod
    def error(cls, reason: str) -> VMState:
        return cls(kind=VMStateKind.ERROR, reason=reason)

    def __str__(self) -> str:
        return f"error: {self.reason}" if self.kind is VMStateKind.ERROR else self.kind.value


def check_transition(name: str, current: VMStateKind, new: VMStateKind) -> None:
    """Raise ``Conflict`` unless ``current -> new`` is an allowed edge."""
    if new not in _ALLOWED[current]:
        raise Conflict(f"machine {name!r} is {current.value}; it cannot become {new.value}")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|(B))?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_size_mb(text: str | int, what: str = "size") -> int:
    """``512MB``, ``2G``, ``1.5GiB``, ``2048`` (MiB) -> MiB.  Units are binary."""
    if isinstance(text, int):
        if text <= 0:
            raise InvalidInput(f"{what} must be positive, got {text}")
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise InvalidInput(
            f"bad {what} {text!r}: use a number with a unit, like 512MB, 2GB or 1.5GiB"
        )
    number, unit, plain_bytes = float(m.group(1)), m.group(2), m.group(3)
    mb = (
        int(number / (1024 * 1024))
        if plain_bytes
        else int(number * _MIB_PER_UNIT[(unit or "M").upper()])
    )
    if mb <= 0:
        raise InvalidInput(f"{what} {text!r} is less than 1 MiB")
    return mb


class PortForward(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: int = Field(ge=1, le=65535)
    guest: int = Field(ge=1, le=65535)
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host}:{self.guest}/{self.protocol}"


def parse_port(text: str) -> PortForward:
    """``HOST:GUEST[/tcp|udp]``."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    host, sep, guest = spec.partition(":")
    if not sep or proto not in ("tcp", "udp"):
        raise InvalidInput(
            f"bad port mapping {text!r}: use HOST:GUEST or HOST:GUEST/udp, like 8080:80"
        )
    try:
        return PortForward(host=int(host), guest=int(guest), protocol=proto)
    except ValueError as err:
        raise InvalidInput(f"bad port mapping {text!r}: ports are numbers from 1 to 65535") from err


class VMConfig(BaseModel):
    """What the user asked for; fixed at creation (``config set`` comes later)."""

    model_config = ConfigDict(frozen=True)

    cpus: int = Field(default=1, ge=1, le=64)
    memory_mb: int = Field(default=512, ge=64, le=1024 * 1024)
    disk_mb: int = Field(default=2048, ge=16)
    image: str = "default"
    kernel_path: str = ""
    initrd_path: str | None = None
    rootfs_path: str = ""
    backend: str = "qemu"
    ports: tuple[PortForward, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    template: str | None = None
    cache_strategy: Literal["writeback", "writethrough", "none", "directsync", "unsafe"] = (
        "writeback"
    )
    """The data drive's cache (``hypervisors.qemu_storage``)."""
    shares: tuple[ShareSpec, ...] = ()
    """Host folders shared into the guest (``machines.shares``)."""
    attachments: tuple[Attachment, ...] = ()
    """Block images and scratch volumes (``machines.attachments``)."""
    restart: str = "no"
    """What to do when the VM process ends on its own (``machines.restart``)."""
    network: Literal["user", "bridge", "none"] = "user"
    """``user``: QEMU's user-mode NIC when ports are forwarded; ``bridge``: a TAP on the
    configured bridge with an address of its own (``machines.network_service``)."""
    network_note: str | None = None
    """Why the machine does not have the network it asked for."""
    net_address: str | None = None
    """The bridged machine's address (``172.16.0.2/24``), kept once picked."""
    apps: dict[str, str] = Field(default_factory=dict)
    """Deployed applications, name -> command (``machines.deploy``), started at boot."""


class RuntimeInfo(BaseModel):
    """Where the running machine is: the hypervisor handle, persisted for re-adoption."""

    handle: dict[str, Any] | None = None
    started_at: datetime | None = None
    boot_seconds: float | None = None
    accel: str | None = None
    console_log: str | None = None
    """The serial console log file; kept after the VM stops so its logs stay readable."""
    restarts: int = 0
    """Automatic restarts in a row (``machines.restart``); a user start resets it."""
    last_exit: str | None = None
    """Why the VM process last ended on its own."""


class VMInstance(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    name: str
    state: VMState = VMState(kind=VMStateKind.CREATING)
    config: VMConfig = VMConfig()
    runtime: RuntimeInfo = RuntimeInfo()
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                "machine names are 1-63 characters: lower-case letters, digits, '-', '_', '.', "
                "starting with a letter or digit"
            )
        return value
