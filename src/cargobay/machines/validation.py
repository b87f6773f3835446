"""Checking a request for a new machine, before anything is stored or created.

Every refusal is one line that names the bad value and says what would be accepted; the
daemon answers them with 400 (``InvalidInput``) or, for a host port another machine
already forwards, 409 (``Conflict``).
"""

from __future__ import annotations

from collections.abc import Iterable

from cargobay.errors import Conflict, InvalidInput
from cargobay.machines.models import (
    NAME_RE,
    PortForward,
    VMConfig,
    VMInstance,
    parse_port,
    parse_size_mb,
)

__all__ = [
    "MAX_BOOT_TIMEOUT",
    "MIN_DISK_MB",
    "MIN_MEMORY_MB",
    "check_boot_timeout",
    "check_host_ports",
    "new_instance",
    "parse_ports",
]

MIN_MEMORY_MB = 64
MIN_DISK_MB = 16
MAX_CPUS = 64
MAX_BOOT_TIMEOUT = 3600.0


def parse_ports(ports: Iterable[str]) -> tuple[PortForward, ...]:
    """``HOST:GUEST[/udp]`` mappings; a host port used twice is refused."""
    forwards = tuple(parse_port(p) for p in ports)
    seen: set[tuple[int, str]] = set()
    for p in forwards:
        if (p.host, p.protocol) in seen:
            raise InvalidInput(f"host port {p.host}/{p.protocol} is forwarded twice; use it once")
        seen.add((p.host, p.protocol))
    return forwards


def new_instance(
    name: str,
    *,
    image: str = "default",
    cpus: int = 1,
    memory: str | int = "512MB",
    disk: str | int = "2GB",
    ports: Iterable[str] = (),
    template: str | None = None,
    backend: str = "qemu",
) -> VMInstance:
    """The machine a create request describes (state CREATING, not stored)."""
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"bad machine name {name!r}: use 1-63 lower-case letters, digits, '-', '_' "
            "or '.', starting with a letter or digit"
        )
    if not 1 <= cpus <= MAX_CPUS:
        raise InvalidInput(f"bad cpus {cpus}: use a number from 1 to {MAX_CPUS}")
    memory_mb = parse_size_mb(memory, "memory")
    if memory_mb < MIN_MEMORY_MB:
        raise InvalidInput(
            f"memory {memory!r} is too small: give the machine at least {MIN_MEMORY_MB}MB"
        )
    disk_mb = parse_size_mb(disk, "disk")
    if disk_mb < MIN_DISK_MB:
        raise InvalidInput(f"disk {disk!r} is too small: give the machine at least {MIN_DISK_MB}MB")
    forwards = parse_ports(ports)
    if not image or "/" in image or image.startswith("."):
        raise InvalidInput(f"bad image name {image!r}: use the name of a built image")
    return VMInstance(
        name=name,
        config=VMConfig(
            cpus=cpus,
            memory_mb=memory_mb,
            disk_mb=disk_mb,
            image=image,
            backend=backend,
            ports=forwards,
            template=template,
        ),
    )


def check_host_ports(vm: VMInstance, others: Iterable[VMInstance]) -> None:
    """``Conflict`` if another machine already forwards one of ``vm``'s host ports."""
    wanted = {(p.host, p.protocol) for p in vm.config.ports}
    for other in others:
        if other.name == vm.name:
            continue
        for p in other.config.ports:
            if (p.host, p.protocol) in wanted:
                raise Conflict(
                    f"host port {p.host}/{p.protocol} is already forwarded to machine "
                    f"{other.name!r}; choose another host port"
                )


def check_boot_timeout(boot_timeout: float) -> None:
    if not 0 < boot_timeout <= MAX_BOOT_TIMEOUT:
        raise InvalidInput(
            f"bad boot_timeout {boot_timeout}: "
            f"use a number of seconds from 1 to {MAX_BOOT_TIMEOUT:.0f}"
        )
