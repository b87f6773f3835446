"""One machine's settings: ``config NAME get|set|list`` (seed 004's ``Config`` verb).

    key        value                               takes effect
    cpus       1..64                               at the next start
    memory     512MB, 1GB ... (at least 64MB)      at the next start
    disk       2GB ... (grow only)                 now, on a stopped machine (the data
                                                   disk file and its ext4 grow)
    ports      "8080:80,5353:53/udp" or ""         at the next start
    env        "KEY=VALUE,KEY2=VALUE2" or ""       at the next start
    cache_strategy  writeback|writethrough|none|directsync|unsafe   at the next start
    restart    no | on-failure[:N] | always        now (``machines.restart``)
    image, template, backend                       read-only (set at creation)

``plan_changes`` checks every requested change before any is applied and returns the new
configuration, so a request with one bad value changes nothing.  Each refusal names its
key (``memory: ...``).  Values may be given as text (the CLI) or as JSON types (a number
for ``cpus``, a list for ``ports``, a mapping for ``env``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargobay.config.settings import size_mib
from cargobay.errors import CargoBayError, ConfigError, Conflict, HypervisorError
from cargobay.machines.files import find_tool
from cargobay.machines.models import VMConfig, VMInstance, VMStateKind
from cargobay.machines.restart import check_restart
from cargobay.machines.shares import check_cache_strategy
from cargobay.machines.validation import (
    MAX_CPUS,
    MIN_DISK_MB,
    MIN_MEMORY_MB,
    check_host_ports,
    parse_ports,
)

__all__ = [
    "READ_ONLY",
    "SETTABLE",
    "Plan",
    "grow_data_disk",
    "machine_settings",
    "plan_changes",
]

SETTABLE = ("cpus", "memory", "disk", "ports", "env", "cache_strategy", "restart")
READ_ONLY = ("image", "template", "backend", "shares", "attachments")
_NEEDS_RESTART = frozenset({"cpus", "memory", "ports", "env", "cache_strategy"})
_ENV_KEY_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


def machine_settings(vm: VMInstance) -> dict[str, Any]:
    """Every setting of ``vm`` as the CLI shows it (sizes in MB)."""
    c = vm.config
    return {
        "cpus": c.cpus,
        "memory": f"{c.memory_mb}MB",
        "disk": f"{c.disk_mb}MB",
        "ports": [str(p) for p in c.ports],
        "env": dict(c.env),
        "image": c.image,
        "template": c.template,
        "backend": c.backend,
        "cache_strategy": c.cache_strategy,
        "restart": c.restart,
        "shares": [
            f"{s.host_path}:{s.guest_path}{':ro' if s.readonly else ''}"
            + ("" if s.kind == "9p" else f" ({s.kind})")
            for s in c.shares
        ],
        "attachments": [
            f"{a.kind} {a.guest_path}" + (f" {a.size_mb}MB" if a.size_mb else "")
            for a in c.attachments
        ],
    }


@dataclass(frozen=True, slots=True)
class Plan:
    config: VMConfig
    changed: tuple[str, ...]
    restart_required: tuple[str, ...]
    grow_disk_to_mb: int | None


def _size(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"{key}: give a size like 768MB or 2GB")
    try:
        mib = size_mib(value, key)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from err
    if mib < minimum:
        raise ConfigError(f"{key}: {value!r} is too small; use at least {minimum}MB")
    return mib


def _cpus(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CPUS:
        raise ConfigError(f"cpus: {value!r} is not a number of vCPUs from 1 to {MAX_CPUS}")
    return value


def _items(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{key}: give a comma-separated list or a list of strings")


def _env(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        pairs = []
        for item in _items("env", value):
            k, sep, v = item.partition("=")
            if not sep:
                raise ConfigError(f"env: {item!r} is not KEY=VALUE")
            pairs.append((k, v))
    env: dict[str, str] = {}
    for k, v in pairs:
        if not k or k[0] not in _ENV_KEY_FIRST or not all(ch.isalnum() or ch == "_" for ch in k):
            raise ConfigError(f"env: {k!r} is not a variable name (letters, digits, '_')")
        if not isinstance(v, str):
            raise ConfigError(f"env: the value of {k} must be text")
        env[k] = v
    return env


def plan_changes(
    vm: VMInstance, changes: Mapping[str, Any], others: Iterable[VMInstance]
) -> Plan:
    """Check ``changes`` against ``vm`` and return the configuration they make."""
    if not changes:
        raise ConfigError(f"nothing to set; the settable keys are: {', '.join(SETTABLE)}")
    update: dict[str, Any] = {}
    grow: int | None = None
    for key, value in changes.items():
        if key in READ_ONLY:
            raise ConfigError(f"{key}: is fixed when the machine is created")
        if key == "cpus":
            update["cpus"] = _cpus(value)
        elif key == "memory":
            update["memory_mb"] = _size("memory", value, MIN_MEMORY_MB)
        elif key == "disk":
            mib = _size("disk", value, MIN_DISK_MB)
            if mib < vm.config.disk_mb:
                raise ConfigError(
                    f"disk: {value!r} is smaller than the current {vm.config.disk_mb}MB; "
                    "a data disk only grows"
                )
            if mib != vm.config.disk_mb:
                if vm.state.kind is not VMStateKind.STOPPED:
                    raise Conflict(
                        f"disk: machine {vm.name!r} is {vm.state.kind.value}; stop it to grow "
                        f"its disk (`cargobay vm stop {vm.name}`)"
                    )
                grow = mib
            update["disk_mb"] = mib
        elif key == "ports":
            try:
                update["ports"] = parse_ports(_items("ports", value))
            except CargoBayError as err:
                raise ConfigError(f"ports: {err}") from err
        elif key == "env":
            update["env"] = _env(value)
        elif key == "cache_strategy":
            try:
                update["cache_strategy"] = check_cache_strategy(value)
            except CargoBayError as err:
                raise ConfigError(f"cache_strategy: {err}") from err
        elif key == "restart":
            try:
                update["restart"] = check_restart(value)
            except CargoBayError as err:
                raise ConfigError(str(err)) from err
        else:
            raise ConfigError(
                f"{key}: unknown setting; the settable keys are: {', '.join(SETTABLE)}"
            )
    config = vm.config.model_copy(update=update)
    new_vm = vm.model_copy(update={"config": config})
    if "ports" in update:
        check_host_ports(new_vm, others)
    changed = tuple(k for k in SETTABLE if _value(vm.config, k) != _value(config, k))
    live = vm.state.kind in (VMStateKind.RUNNING, VMStateKind.PAUSED)
    restart = tuple(k for k in changed if live and k in _NEEDS_RESTART)
    return Plan(config, changed, restart, grow)


def _value(config: VMConfig, key: str) -> Any:
    return {
        "cpus": config.cpus,
        "memory": config.memory_mb,
        "disk": config.disk_mb,
        "ports": config.ports,
        "env": config.env,
        "cache_strategy": config.cache_strategy,
        "restart": config.restart,
    }[key]


async def grow_data_disk(path: Path, size_mb: int) -> None:
    """Grow the sparse data-disk file to ``size_mb`` and its ext4 file system to fill it
    (``resize2fs`` on the unmounted file; the machine is stopped)."""
    try:
        current = os.stat(path).st_size
    except FileNotFoundError as err:
        raise Conflict(f"the data disk {path} is missing; the machine cannot be resized") from err
    if size_mb * 1024 * 1024 <= current:
        return
    resize2fs = find_tool("resize2fs")
    os.truncate(path, size_mb * 1024 * 1024)
    proc = await asyncio.create_subprocess_exec(
        resize2fs,
        "-f",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        os.truncate(path, current)
        raise HypervisorError(
            f"resize2fs could not grow {path}: {out.decode(errors='replace').strip()}"
        )
