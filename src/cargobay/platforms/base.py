"""The platform layer of seed 004 (its PAL): what lies between CargoBay and the Linux
that runs the VMs.

On Linux that Linux is the host itself.  On macOS it is a Lima instance (or a
Virtualization.framework VM started with ``vfkit``); on Windows it is a WSL2
distribution.  A ``PlatformLayer`` says how to bring that Linux up and down, how to run a
command in it, how to copy files in and out, and how a host path is seen from inside:
command lines and path logic only, as lists of arguments, so they are unit-tested on
Linux.  Running them is a ``Runner``'s job (``cargobay.apps.wsl2.subprocess_runner`` on
the real platform).

Each layer is registered only on its own platform (``cargobay.platforms.available``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["PlatformFeatures", "PlatformLayer", "PlatformStatus"]


@dataclass(frozen=True, slots=True)
class PlatformFeatures:
    host_is_linux: bool
    """Commands run on the host directly (no layer to start)."""
    file_sharing: str
    """How host folders reach the layer's Linux: "native", "virtiofs", "9p", "drvfs"."""
    nested_virtualization: bool
    """KVM is (or can be) usable inside the layer's Linux."""


@dataclass(frozen=True, slots=True)
class PlatformStatus:
    ready: bool
    message: str


@runtime_checkable
class PlatformLayer(Protocol):
    name: str
    features: PlatformFeatures

    def create_argv(self) -> list[list[str]]:
        """The commands that create the layer's Linux (none when it is the host)."""
        ...

    def start_argv(self) -> list[str] | None:
        """The command that starts it (None: always running)."""
        ...

    def stop_argv(self, force: bool = False) -> list[str] | None: ...

    def exec_argv(self, argv: Sequence[str], workdir: str | None = None) -> list[str]:
        """The host command line that runs ``argv`` inside the layer's Linux."""
        ...

    def copy_in_argv(self, host_path: str, linux_path: str) -> list[str]: ...

    def copy_out_argv(self, linux_path: str, host_path: str) -> list[str]: ...

    def linux_path(self, host_path: str) -> str:
        """``host_path`` as the layer's Linux sees it (InvalidInput if it cannot)."""
        ...
