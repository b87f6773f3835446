"""The Linux platform layer: the host is the Linux that runs QEMU, so every command runs
as it is and paths are what they are.  What is left is detection: is QEMU installed, and
can this user open /dev/kvm (``hypervisors.accel`` decides later whether KVM really boots
a guest; TCG is the fallback)."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from cargobay.errors import InvalidInput
from cargobay.platforms.base import PlatformFeatures, PlatformStatus

__all__ = ["LinuxPlatform"]

QEMU = "qemu-system-x86_64"


class LinuxPlatform:
    name = "linux"
    features = PlatformFeatures(
        host_is_linux=True, file_sharing="native", nested_virtualization=True
    )

    def __init__(self, qemu_binary: str | None = None, kvm_device: Path = Path("/dev/kvm")) -> None:
        self.qemu_binary = qemu_binary
        self.kvm_device = kvm_device

    def detect(self) -> PlatformStatus:
        qemu = self.qemu_binary or shutil.which(QEMU)
        if not qemu or not os.access(qemu, os.X_OK):
            return PlatformStatus(
                False, f"{self.qemu_binary or QEMU} not found; install it (Debian: qemu-system-x86)"
            )
        if not self.kvm_device.exists():
            return PlatformStatus(True, f"QEMU {qemu}; no {self.kvm_device}: VMs run under TCG")
        if not os.access(self.kvm_device, os.R_OK | os.W_OK):
            return PlatformStatus(
                True,
                f"QEMU {qemu}; {self.kvm_device} is not usable by this user (add it to the "
                "kvm group): VMs run under TCG",
            )
        return PlatformStatus(True, f"QEMU {qemu} with {self.kvm_device}")

    def create_argv(self) -> list[list[str]]:
        return []

    def start_argv(self) -> list[str] | None:
        return None

    def stop_argv(self, force: bool = False) -> list[str] | None:
        return None

    def exec_argv(self, argv: Sequence[str], workdir: str | None = None) -> list[str]:
        if not argv:
            raise InvalidInput("nothing to run")
        if workdir is None:
            return list(argv)
        return ["sh", "-c", f'cd {shlex.quote(workdir)} && exec "$@"', "sh", *argv]

    def copy_in_argv(self, host_path: str, linux_path: str) -> list[str]:
        return ["cp", "-a", "--", host_path, linux_path]

    def copy_out_argv(self, linux_path: str, host_path: str) -> list[str]:
        return ["cp", "-a", "--", linux_path, host_path]

    def linux_path(self, host_path: str) -> str:
        if not host_path:
            raise InvalidInput("empty path")
        return host_path
