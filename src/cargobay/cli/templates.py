"""``aiva init --template``: the resource profiles of seed 004 (section 4.1), scaled to
the machine they run on.

The seed's profiles assume a workstation:

    minimal       2 CPUs   4 GB   20 GB   lightweight MCP servers
    standard      4 CPUs   8 GB   50 GB   ordinary AI agents
    performance   8 CPUs  16 GB  100 GB   large model inference

A template is a starting point that must boot, so the CLI scales all three by one
factor that makes ``performance`` fit this host, keeping the ratios between them:

    factor = min(1, host CPUs / 8, (host memory / 2) / 16 GiB)

``performance`` thus gets every host CPU and at most half the host's memory (the rest
is left to the host and other VMs).  CPUs round down (at least 1), memory rounds down to
256 MiB (at least 256 MiB), disks round down to whole GiB (at least 1 GiB; data disks are
sparse files, so a large disk costs only what the guest writes).  On a host with 8 CPUs
and 32 GiB or more the seed's numbers are used unchanged; on this project's 2-CPU,
24 GiB CI machine the factor is 0.25: minimal 1 CPU/1 GiB/5 GiB, standard
1 CPU/2 GiB/12 GiB, performance 2 CPUs/4 GiB/25 GiB.

The host is the machine the daemon runs on, which is this one: the daemon listens on a
local Unix socket.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cargobay.errors import InvalidInput

__all__ = ["SEED_PROFILES", "Profile", "host_resources", "resolve_template", "scaled_profiles"]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    cpus: int
    memory_mib: int
    disk_mib: int
    purpose: str


SEED_PROFILES: tuple[Profile, ...] = (
    Profile("minimal", 2, 4 * 1024, 20 * 1024, "lightweight MCP servers"),
    Profile("standard", 4, 8 * 1024, 50 * 1024, "ordinary AI agents"),
    Profile("performance", 8, 16 * 1024, 100 * 1024, "large model inference"),
)

_REFERENCE = SEED_PROFILES[-1]


def host_resources() -> tuple[int, int]:
    """(CPUs this process may use, physical memory in MiB)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        mem_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (ValueError, OSError):
        mem_mib = 2048
    return max(1, cpus), max(256, int(mem_mib))


def scale_factor(host_cpus: int, host_mem_mib: int) -> float:
    return min(1.0, host_cpus / _REFERENCE.cpus, (host_mem_mib / 2) / _REFERENCE.memory_mib)


def scaled_profiles(host_cpus: int, host_mem_mib: int) -> dict[str, Profile]:
    """The seed's profiles scaled for a host (see the module docstring)."""
    f = scale_factor(host_cpus, host_mem_mib)
    return {
        p.name: Profile(
            name=p.name,
            cpus=max(1, int(p.cpus * f)),
            memory_mib=max(256, int(p.memory_mib * f) // 256 * 256),
            disk_mib=max(1024, int(p.disk_mib * f) // 1024 * 1024),
            purpose=p.purpose,
        )
        for p in SEED_PROFILES
    }


def resolve_template(name: str, host: tuple[int, int] | None = None) -> Profile:
    """The scaled profile called ``name``; InvalidInput listing the valid names otherwise."""
    profiles = scaled_profiles(*(host or host_resources()))
    try:
        return profiles[name.strip().lower()]
    except KeyError:
        raise InvalidInput(
            f"unknown template {name!r}; valid templates: {', '.join(profiles)} "
            "(see `aiva templates`)"
        ) from None
