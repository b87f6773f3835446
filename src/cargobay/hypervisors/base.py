"""The hypervisor interface: a small Protocol, a ``Features`` record, and a registry.

Like Lima's drivers: every backend (QEMU here; Firecracker, libvirt, macOS
Virtualization.framework, Windows WSL2 later) implements ``Hypervisor``; one conformance
suite (tests/integration/hypervisors) runs against every registered backend and skips
what a backend's ``Features`` says it cannot do.

A backend boots a ``VMSpec`` and returns a ``VMHandle``: everything needed to find the
VM again after the daemon restarts (the VM process outlives the daemon).  The machines
service persists the handle and passes it back for every later call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cargobay.errors import HypervisorError, NotFound

__all__ = [
    "BlockStatsSource",
    "Features",
    "Hypervisor",
    "Snapshotting",
    "VMHandle",
    "VMSpec",
    "VMStatus",
    "available",
    "get",
    "register",
]


@dataclass(frozen=True, slots=True)
class Features:
    pause: bool = False
    """pause/resume (vCPUs stopped, memory kept)."""
    graceful_stop: bool = False
    """An ACPI power button or equivalent the guest can act on."""
    adopt: bool = False
    """A VM keeps running when the daemon dies and can be found again from its handle."""
    console_log: bool = False
    serial_channel: bool = False
    """The guest agent channel is a virtio-serial port (host side: a Unix socket)."""
    vsock: bool = False
    """The guest agent channel can be AF_VSOCK / hybrid vsock."""
    kvm: bool = False
    """Hardware acceleration is possible on this host."""


@dataclass(frozen=True, slots=True)
class VMSpec:
    """What to boot.  Paths are absolute; the backend creates nothing outside ``run_dir``
    and ``state_dir`` except the VM process itself."""

    vm_id: str
    name: str
    cpus: int
    memory_mb: int
    kernel: Path
    rootfs: Path
    """Shared, opened read-only."""
    data_disk: Path
    """Per-VM writable disk (created by the machines service)."""
    run_dir: Path
    """Where sockets go (short path)."""
    state_dir: Path
    """Where the console log and the backend's own files go."""
    initrd: Path | None = None
    cmdline: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class VMStatus(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    """The VM process is gone."""
    UNKNOWN = "unknown"
    """The process exists but does not answer its control socket."""


@dataclass(frozen=True, slots=True)
class VMHandle:
    vm_id: str
    backend: str
    pid: int
    control_socket: str
    """QMP (QEMU), API socket (Firecracker), domain name (libvirt)."""
    agent_address: str
    """A virga address for the guest agent channel (``unix:/run/cargobay/vm/ID/agent.sock``)."""
    console_log: str
    accel: str
    """``kvm`` or ``tcg``."""
    qga_address: str | None = None
    """The qemu-guest-agent channel, where the backend provides one."""
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VMHandle:
        return cls(**data)


@runtime_checkable
class Hypervisor(Protocol):
    name: str

    @property
    def features(self) -> Features: ...

    async def start(self, spec: VMSpec) -> VMHandle:
        """Launch the VM process and return once its control socket answers.

        Does not wait for the guest to boot (the machines service waits for the agent).
        On failure nothing is left running and the error says why (with the last lines of
        the VM process's output)."""
        ...

    async def stop(self, handle: VMHandle, timeout: float = 10.0) -> None:
        """Ask the guest to power off; after ``timeout`` seconds, kill the process."""
        ...

    async def kill(self, handle: VMHandle) -> None:
        """End the VM process at once.  A no-op if it is already gone."""
        ...

    async def pause(self, handle: VMHandle) -> None: ...

    async def resume(self, handle: VMHandle) -> None: ...

    async def status(self, handle: VMHandle) -> VMStatus:
        """What the VM is doing now; works on a handle from a previous daemon run."""
        ...

    def console_log(self, handle: VMHandle) -> Path: ...


@runtime_checkable
class BlockStatsSource(Protocol):
    """A backend that can report per-drive I/O counters (``cargobay.machines.metrics``);
    one that cannot simply does not have the method, and its machines show no disk I/O."""

    async def block_stats(self, handle: VMHandle) -> list[dict[str, Any]]:
        """``[{"drive", "read_bytes", "write_bytes", "read_ops", "write_ops"}]``."""
        ...


@runtime_checkable
class Snapshotting(Protocol):
    """A backend that can save a running VM's state to a file and start a VM from one
    (``cargobay.machines.snapshots``).  ``VMSpec.extra`` carries the start options:
    ``incoming="defer"`` (wait for a state instead of booting), ``memory_file`` and
    ``memory_share`` (guest RAM in a file: shared to make a template, private to clone
    one), ``start_paused="1"``."""

    async def save_state(self, handle: VMHandle, path: Path, *, ignore_shared: bool) -> None:
        """Pause the VM and write its state; it stays paused."""
        ...

    async def load_state(
        self, handle: VMHandle, path: Path, *, ignore_shared: bool, resume: bool = True
    ) -> None:
        """Load a saved state into a VM started with ``incoming="defer"``."""
        ...


_REGISTRY: dict[str, Callable[[], Hypervisor]] = {}


def register(name: str, factory: Callable[[], Hypervisor]) -> None:
    """Make a backend available under ``name`` (backends register on their own platform only)."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Hypervisor:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise NotFound(
            f"unknown hypervisor backend {name!r}; available: {', '.join(available()) or 'none'}"
        ) from None
    try:
        return factory()
    except HypervisorError:
        raise
    except Exception as err:
        raise HypervisorError(f"hypervisor backend {name!r} failed to initialise: {err}") from err
