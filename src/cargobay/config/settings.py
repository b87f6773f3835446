"""``config.yaml``: the defaults for new machines, the platform layers and networking.

The file lives at ``Paths.config_file`` (``$XDG_CONFIG_HOME/cargobay/config.yaml``, or
``$CARGOBAY_HOME/config/config.yaml``).  A missing file means every default below; the
format is the seed's (004, section 2.1.3)::

    version: "1.0"
    defaults:                   # a machine created without --cpus/--memory/--disk gets these
      cpus: 1
      memory: "512MB"
      disk: "2GB"
      cache_strategy: "writeback"
    platform:
      linux:   {firecracker_binary: /usr/bin/firecracker, jailer_binary: /usr/bin/jailer}
      macos:   {lima_instance: cargobay, lima_cpus: 4, lima_memory: "8GB", vm_type: vz}
      windows: {wsl_distro: cargobay-wsl, nested_virtualization: true}
    networking:
      bridge_name: "mcp-br0"
      subnet: "172.16.0.0/24"
      dns_servers: ["8.8.8.8", "1.1.1.1"]

The shipped machine defaults are the ones that boot on a small host (1 vCPU, 512 MB,
2 GB), not the seed's workstation numbers (4 CPUs, 8 GB, 50 GB); put those in the file
on a big machine.

Validation is strict (pydantic v2, ``strict=True``, unknown keys forbidden): ``cpus: "4"``
is refused rather than guessed, and every error starts with the key path, like
``defaults.memory: bad memory '8 parsecs': ...``.  ``set_key`` validates the whole
document before anything is written; ``save_config`` writes atomically (a temporary file
renamed over the old one), so a reader never sees half a file.  Comments in the file are
not kept by ``set``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cargobay.errors import ConfigError, InvalidInput

__all__ = [
    "CacheStrategy",
    "Config",
    "Defaults",
    "Networking",
    "PlatformSettings",
    "dump_config",
    "get_key",
    "load_config",
    "parse_config",
    "save_config",
    "set_key",
    "settings_items",
]

CacheStrategy = Literal["writeback", "writethrough", "none", "directsync", "unsafe"]
"""QEMU's ``cache=`` modes for the data disk."""

_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ is 16 with the NUL
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|(B))?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def size_mib(value: str | int, what: str) -> int:
    """``512MB``, ``2G``, ``1.5GiB``, ``2048`` (MiB) -> MiB (binary units)."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{what} must be positive, got {value}")
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"bad {what} {value!r}: use a number with a unit, like 512MB or 2GB")
    number, unit, plain_bytes = float(m.group(1)), m.group(2), m.group(3)
    mib = (
        int(number / (1024 * 1024))
        if plain_bytes
        else int(number * _MIB_PER_UNIT[(unit or "M").upper()])
    )
    if mib <= 0:
        raise ValueError(f"{what} {value!r} is less than 1 MiB")
    return mib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Defaults(_Strict):
    cpus: int = Field(default=1, ge=1, le=64)
    memory: str | int = "512MB"
    disk: str | int = "2GB"
    cache_strategy: CacheStrategy = "writeback"

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int) -> str | int:
        if size_mib(value, "memory") < 64:
            raise ValueError(f"memory {value!r} is too small: use at least 64MB")
        return value

    @field_validator("disk")
    @classmethod
    def _disk(cls, value: str | int) -> str | int:
        if size_mib(value, "disk") < 16:
            raise ValueError(f"disk {value!r} is too small: use at least 16MB")
        return value

    @property
    def memory_mb(self) -> int:
        return size_mib(self.memory, "memory")

    @property
    def disk_mb(self) -> int:
        return size_mib(self.disk, "disk")


class LinuxSettings(_Strict):
    firecracker_binary: str = "/usr/bin/firecracker"
    jailer_binary: str = "/usr/bin/jailer"
    qemu_binary: str | None = None


class MacosSettings(_Strict):
    lima_instance: str = Field(default="cargobay", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    lima_cpus: int = Field(default=4, ge=1, le=256)
    lima_memory: str | int = "8GB"
    vm_type: Literal["vz", "qemu"] = "vz"

    @field_validator("lima_memory")
    @classmethod
    def _memory(cls, value: str | int) -> str | int:
        size_mib(value, "lima_memory")
        return value


class WindowsSettings(_Strict):
    wsl_distro: str = Field(default="cargobay-wsl", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    nested_virtualization: bool = True


class PlatformSettings(_Strict):
    linux: LinuxSettings = LinuxSettings()
    macos: MacosSettings = MacosSettings()
    windows: WindowsSettings = WindowsSettings()


class Networking(_Strict):
    bridge_name: str = "mcp-br0"
    subnet: str = "172.16.0.0/24"
    dns_servers: list[str] = Field(default_factory=lambda: ["8.8.8.8", "1.1.1.1"])

    @field_validator("bridge_name")
    @classmethod
    def _bridge(cls, value: str) -> str:
        if not _IFNAME.match(value):
            raise ValueError(
                f"bad bridge name {value!r}: 1-15 letters, digits, '_', '.', '-' (a Linux "
                "interface name)"
            )
        return value

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(f"bad subnet {value!r}: {err} (use CIDR, like 172.16.0.0/24)") from err
        if net.prefixlen > 29:
            raise ValueError(f"subnet {value!r} is too small: use a /29 or larger")
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns(cls, value: list[str]) -> list[str]:
        for server in value:
            try:
                ipaddress.ip_address(server)
            except ValueError as err:
                raise ValueError(f"bad DNS server {server!r}: use an IP address") from err
        return value

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)


class Config(_Strict):
    version: Literal["1.0"] = "1.0"
    defaults: Defaults = Defaults()
    platform: PlatformSettings = PlatformSettings()
    networking: Networking = Networking()


# -- errors -------------------------------------------------------------------------------


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _config_error(err: ValidationError, source: str) -> ConfigError:
    """The first problem as ``key.path: message`` (plus a count of the others)."""
    first = err.errors()[0]
    key = _key_path(tuple(first.get("loc", ())))
    kind = first.get("type")
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "missing"
    else:
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ").rstrip(".")
    more = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    where = f" in {source}" if source else ""
    return ConfigError(f"{key}: {msg}{more}{where}")


# -- reading and writing ------------------------------------------------------------------


def parse_config(text: str, source: str = "") -> Config:
    """The configuration in YAML ``text`` (empty means all defaults)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source or 'config.yaml'} is not valid YAML: {err}") from err
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source or 'config.yaml'}: the top level must be a mapping of keys")
    return validate_config(doc, source)


def validate_config(doc: dict[str, Any], source: str = "") -> Config:
    try:
        return Config.model_validate(doc)
    except ValidationError as err:
        raise _config_error(err, source) from err


def load_config(path: Path) -> Config:
    """The configuration in ``path``; all defaults when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    return parse_config(text, str(path))


def dump_config(config: Config) -> str:
    doc = config.model_dump(mode="json")
    text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text


def save_config(path: Path, config: Config) -> None:
    """Write ``config`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# CargoBay configuration; written by `cargobay config set`.\n")
            f.write(dump_config(config))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- keys ---------------------------------------------------------------------------------


def settings_items(config: Config) -> Iterator[tuple[str, Any]]:
    """Every leaf setting as ``(dotted.key, value)``, in file order."""

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            yield prefix, value

    yield from walk("", config.model_dump(mode="json"))


def _split(key: str) -> list[str]:
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise InvalidInput(f"bad key {key!r}: use a dotted path like defaults.memory")
    return parts


def _walk(doc: dict[str, Any], parts: list[str], key: str) -> Any:
    """The node at ``parts`` in ``doc``; a ConfigError naming the whole ``key`` if none."""
    node: Any = doc
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(node) if isinstance(node, dict) else "none (it is a value)"
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"{key}: unknown key; the keys under {where} are: {known}")
        node = node[part]
    return node


def get_key(config: Config, key: str) -> Any:
    """The value at dotted ``key`` (a section gives a mapping)."""
    return _walk(config.model_dump(mode="json"), _split(key), key)


def set_key(config: Config, key: str, value: str) -> Config:
    """``config`` with ``key`` set to ``value`` (YAML: ``4`` is a number, ``[a, b]`` a
    list, ``true`` a boolean); the result is validated as a whole."""
    parts = _split(key)
    doc = config.model_dump(mode="json")
    _walk(doc, parts, key)
    node = _walk(doc, parts[:-1], key)
    try:
        parsed = yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        parsed = value
    if isinstance(node[parts[-1]], dict):
        raise ConfigError(
            f"{key}: is a section; set one of its keys, like {key}.{next(iter(node[parts[-1]]))}"
        )
    if (
        isinstance(node[parts[-1]], str)
        and isinstance(parsed, int | float)
        and not isinstance(parsed, bool)
    ):
        parsed = value.strip()  # a version or size typed as a bare number: keep the text
    node[parts[-1]] = parsed
    return validate_config(doc)
