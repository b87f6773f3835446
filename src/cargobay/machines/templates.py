"""Machine templates: the resource profiles of seed 004 (section 4.1), scaled to the
host, and the templates shipped with CargoBay that name a profile plus an image, ports
and environment.

The seed's profiles assume a workstation:

    minimal       2 CPUs   4 GB   20 GB   lightweight MCP servers
    standard      4 CPUs   8 GB   50 GB   ordinary AI agents
    performance   8 CPUs  16 GB  100 GB   large model inference

A template is a starting point that must boot, so all three are scaled by one factor
that makes ``performance`` fit this host, keeping the ratios between them:

    factor = min(1, host CPUs / 8, (host memory / 2) / 16 GiB)

``performance`` thus gets every host CPU and at most half the host's memory.  CPUs round
down (at least 1), memory rounds down to 256 MiB (at least 256 MiB), disks round down to
whole GiB (at least 1 GiB; data disks are sparse files).  On a host with 8 CPUs and
32 GiB or more the seed's numbers are used unchanged; on a 2-CPU, 24 GiB machine the
factor is 0.25: minimal 1 CPU/1 GiB/5 GiB, standard 1 CPU/2 GiB/12 GiB, performance
2 CPUs/4 GiB/25 GiB.

Shipped templates are YAML files in ``template_files/`` (package data), one per
template, named after it::

    description: lightweight MCP server
    profile: minimal            # one of the profiles above
    image: default
    ports: ["18000:8000"]       # HOST:GUEST[/udp]
    env: {MCP_TRANSPORT: streamable-http}

``resolve_template(name)`` accepts a profile name or a shipped template name; anything
else is an ``InvalidInput`` listing every known name.  The host is the machine the
daemon runs on (it listens on a local Unix socket).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cargobay.errors import InvalidInput

__all__ = [
    "SEED_PROFILES",
    "MachineTemplate",
    "Profile",
    "ResolvedTemplate",
    "host_resources",
    "known_templates",
    "resolve_template",
    "scale_factor",
    "scaled_profiles",
    "shipped_templates",
]


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


class MachineTemplate(BaseModel):
    """One shipped template file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    profile: str
    image: str = "default"
    ports: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResolvedTemplate:
    """What a template gives a new machine (a profile alone has no image/ports/env)."""

    name: str
    profile: Profile
    image: str | None = None
    ports: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


@cache
def shipped_templates() -> dict[str, MachineTemplate]:
    """The templates in the package's ``template_files/``, by name."""
    profiles = {p.name for p in SEED_PROFILES}
    found: dict[str, MachineTemplate] = {}
    folder = resources.files("cargobay.machines").joinpath("template_files")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        name = entry.name.removesuffix(".yaml")
        try:
            doc = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            template = MachineTemplate.model_validate({**doc, "name": name})
        except (yaml.YAMLError, ValidationError) as err:
            raise InvalidInput(f"shipped template {entry.name} is broken: {err}") from err
        if template.profile not in profiles:
            raise InvalidInput(
                f"shipped template {entry.name} names unknown profile {template.profile!r}"
            )
        found[name] = template
    return found


def known_templates() -> list[str]:
    """Every name ``--template`` accepts: the profiles, then the shipped templates."""
    return [p.name for p in SEED_PROFILES] + sorted(shipped_templates())


def resolve_template(name: str, host: tuple[int, int] | None = None) -> ResolvedTemplate:
    """The profile or shipped template called ``name``, scaled for ``host``."""
    profiles = scaled_profiles(*(host or host_resources()))
    key = name.strip().lower()
    if key in profiles:
        return ResolvedTemplate(name=key, profile=profiles[key])
    shipped = shipped_templates().get(key)
    if shipped is None:
        raise InvalidInput(
            f"unknown template {name!r}; known templates: {', '.join(known_templates())} "
            "(see `aiva templates`)"
        )
    return ResolvedTemplate(
        name=key,
        profile=profiles[shipped.profile],
        image=shipped.image,
        ports=shipped.ports,
        env=dict(shipped.env),
        description=shipped.description,
    )
