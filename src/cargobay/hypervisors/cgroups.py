"""CPU and memory limits for a VM process in a cgroup of its own.

Each VM's QEMU is moved, right after it starts, into ``cargobay/<vm id>`` under the
host's cgroup hierarchy, with

    CPU     a quota of ``cpus`` whole CPUs per 100 ms period (a guest cannot take more
            host CPU than it has vCPUs, QEMU's own threads included)
    memory  the guest RAM plus an allowance for QEMU itself (``overhead_mb``: device
            emulation, TCG's translation cache, I/O buffers)

Both cgroup layouts are handled: the unified v2 hierarchy (``cpu.max``, ``memory.max``;
the CI machines) and v1 controllers mounted apart (``cpu.cfs_quota_us``,
``memory.limit_in_bytes``; this development machine, which has no systemd).  Where
neither can be used (not root, controllers missing, ``CARGOBAY_CGROUPS=off``) the VM runs
without limits and ``place`` says why; that is reported, not an error.  ``remove`` takes
the directories away once the process is gone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CGROUP_ROOT", "Limits", "Placement", "limits_for", "place", "remove", "sweep"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "cargobay"
PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_quota_us: int
    period_us: int
    memory_bytes: int


def overhead_mb(memory_mb: int) -> int:
    """What QEMU needs beyond the guest RAM (measured: 100-200 MiB for a 256-512 MiB TCG
    guest; the allowance is generous, since hitting it kills the VM)."""
    return 384 + memory_mb // 8


def limits_for(cpus: int, memory_mb: int) -> Limits:
    return Limits(
        cpu_quota_us=cpus * PERIOD_US,
        period_us=PERIOD_US,
        memory_bytes=(memory_mb + overhead_mb(memory_mb)) * 1024 * 1024,
    )


@dataclass(frozen=True, slots=True)
class Placement:
    version: int
    """1 or 2; 0 when the VM runs without a cgroup of its own (``reason`` says why)."""
    paths: tuple[str, ...] = ()
    reason: str = ""

    def as_extra(self) -> dict[str, str]:
        if not self.version:
            return {"cgroup_note": self.reason}
        return {"cgroup_version": str(self.version), "cgroups": ":".join(self.paths)}


def _v2_usable(root: Path) -> bool:
    controllers = root / "cgroup.controllers"
    with contextlib.suppress(OSError):
        return {"cpu", "memory"} <= set(controllers.read_text().split())
    return False


def place(
    vm_id: str,
    pid: int,
    limits: Limits,
    *,
    root: Path = CGROUP_ROOT,
    env: Mapping[str, str] | None = None,
) -> Placement:
    """Move ``pid`` into a new cgroup for ``vm_id`` with ``limits``."""
    env = os.environ if env is None else env
    if env.get("CARGOBAY_CGROUPS", "on") == "off":
        return Placement(0, reason="CPU and memory limits are off (CARGOBAY_CGROUPS=off)")
    if os.geteuid() != 0:
        return Placement(
            0, reason="no CPU and memory limits: cgroups need the daemon to run as root"
        )
    name = vm_id[:12]
    sweep(root)
    try:
        if _v2_usable(root):
            return _place_v2(root, name, pid, limits)
        if (root / "cpu" / "cgroup.procs").exists() and (root / "memory" / "cgroup.procs").exists():
            return _place_v1(root, name, pid, limits)
    except OSError as err:
        return Placement(0, reason=f"no CPU and memory limits: cgroup setup failed: {err}")
    return Placement(
        0, reason=f"no CPU and memory limits: no cpu and memory cgroup controllers under {root}"
    )


def _place_v2(root: Path, name: str, pid: int, limits: Limits) -> Placement:
    parent = root / PARENT
    parent.mkdir(exist_ok=True)
    for level in (root, parent):
        enabled = set((level / "cgroup.subtree_control").read_text().split())
        missing = [c for c in ("cpu", "memory") if c not in enabled]
        if missing:
            (level / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
    group = parent / name
    group.mkdir(exist_ok=True)
    (group / "cpu.max").write_text(f"{limits.cpu_quota_us} {limits.period_us}")
    (group / "memory.max").write_text(str(limits.memory_bytes))
    (group / "cgroup.procs").write_text(str(pid))
    return Placement(2, (str(group),))


def _place_v1(root: Path, name: str, pid: int, limits: Limits) -> Placement:
    cpu = root / "cpu" / PARENT / name
    memory = root / "memory" / PARENT / name
    for group in (cpu, memory):
        group.mkdir(parents=True, exist_ok=True)
    (cpu / "cpu.cfs_period_us").write_text(str(limits.period_us))
    (cpu / "cpu.cfs_quota_us").write_text(str(limits.cpu_quota_us))
    (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
    for group in (cpu, memory):
        (group / "cgroup.procs").write_text(str(pid))
    return Placement(1, (str(cpu), str(memory)))


def remove(extra: Mapping[str, str]) -> None:
    """Remove a VM's cgroups (``Placement.as_extra``); its process must be gone.  A killed
    QEMU that its parent (init) has not reaped yet still holds its cgroup: that one is
    left to ``sweep``."""
    for path in filter(None, extra.get("cgroups", "").split(":")):
        with contextlib.suppress(OSError):
            Path(path).rmdir()


def sweep(root: Path = CGROUP_ROOT) -> None:
    """Remove every empty VM cgroup (of VMs gone earlier), best effort."""
    for parent in (root / PARENT, root / "cpu" / PARENT, root / "memory" / PARENT):
        with contextlib.suppress(OSError):
            for group in parent.iterdir():
                if group.is_dir():
                    with contextlib.suppress(OSError):
                        if not (group / "cgroup.procs").read_text().strip():
                            group.rmdir()
