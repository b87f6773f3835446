"""Small value parsers of the Compose Specification: durations, byte sizes, ports, volumes.

Each takes what a user may write (short or long syntax) and gives one normal form, or
raises ``ValueError`` with a message that says what is wrong; the model turns that into
an error naming the file, the service and the key.  Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "format_duration",
    "parse_bytes",
    "parse_duration",
    "parse_port",
    "parse_volume",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a Go-style duration (``1m30s``, ``500ms``, ``1.5s``) or a number of
    seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (like 10s, 1m30s, 500ms)")
    return total


def format_duration(seconds: float) -> str:
    """A duration as Compose prints it (``1m30s``, ``500ms``, ``0s``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if minutes:
        out += f"{int(minutes)}m"
    if secs:
        out += f"{secs:g}s"
    return out


_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_bytes(value: str | int) -> int:
    """Bytes from ``512m``, ``1g``, ``100kb``, ``1GiB`` or a plain number (binary units, as
    Docker reads them)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a byte size")
    if isinstance(value, int):
        return value
    match = _BYTES.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a byte size (like 512m, 1g, 1024)")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])


# -- ports --------------------------------------------------------------------------------

_PORT = re.compile(
    r"^(?:(?:\[?(?P<host>[0-9a-fA-F.:]+?)\]?:)?(?P<pub>\d*)(?:-(?P<pub_end>\d+))?:)?"
    r"(?P<target>\d+)(?:-(?P<target_end>\d+))?(?:/(?P<proto>tcp|udp|sctp))?$"
)


def _port_number(text: str, what: str) -> int:
    number = int(text)
    if not 0 < number < 65536:
        raise ValueError(f"{what} {number} is out of range 1-65535")
    return number


def parse_port(spec: Any) -> list[dict[str, Any]]:
    """The long form(s) of one ``ports`` entry: a list of ``{"target", "published",
    "host_ip", "protocol", "mode"}``.  A range maps one to one (``8000-8001:80-81`` is two
    entries); a published range with one target stays one entry (Docker picks a free port
    of the range)."""
    if isinstance(spec, dict):
        out = dict(spec)
        out["target"] = _port_number(str(out.get("target", "")), "target port")
        given = out.get("published")
        if given is not None:
            text = str(given)
            if not re.fullmatch(r"\d+(-\d+)?", text):
                raise ValueError(f"published port {text!r} is not a port or range")
            out["published"] = text
        out.setdefault("protocol", "tcp")
        out.setdefault("mode", "ingress")
        return [out]
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise ValueError(f"{spec!r} is not a port (a number, a string or a mapping)")
    text = str(spec).strip()
    match = _PORT.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a port mapping ([[HOST_IP:]PUBLISHED[-END]:]TARGET[-END][/PROTOCOL])"
        )
    host = match.group("host")
    proto = match.group("proto") or "tcp"
    target = _port_number(match.group("target"), "target port")
    target_end = _port_number(match.group("target_end") or str(target), "target port")
    if target_end < target:
        raise ValueError(f"{text!r}: the target range ends before it starts")
    targets = list(range(target, target_end + 1))
    pub_text = match.group("pub") or ""
    published: list[str | None]
    if not pub_text:
        if match.group("pub_end"):
            raise ValueError(f"{text!r}: a published range needs its first port")
        published = [None] * len(targets)
    else:
        first = _port_number(pub_text, "published port")
        last = _port_number(match.group("pub_end") or pub_text, "published port")
        if last < first:
            raise ValueError(f"{text!r}: the published range ends before it starts")
        if len(targets) == 1:
            published = [str(first) if first == last else f"{first}-{last}"]
        elif last - first + 1 != len(targets):
            raise ValueError(f"{text!r}: port ranges do not match in length")
        else:
            published = [str(port) for port in range(first, last + 1)]
    return [
        {
            "target": one_target,
            "published": one_published,
            "host_ip": host,
            "protocol": proto,
            "mode": "ingress",
        }
        for one_target, one_published in zip(targets, published, strict=True)
    ]


# -- volumes ------------------------------------------------------------------------------

_BIND_PREFIXES = (".", "/", "~")
_MODES = {"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave",
          "private", "rprivate", "consistent", "cached", "delegated"}  # fmt: skip


def parse_volume(spec: Any) -> dict[str, Any]:
    """The long form of one service ``volumes`` entry: ``{"type", "source", "target",
    "read_only", ...}``.  Short syntax ``[SOURCE:]TARGET[:MODE]``: a source starting with
    ``.``, ``/`` or ``~`` is a bind mount, any other source a named volume, no source an
    anonymous volume."""
    if isinstance(spec, dict):
        long = dict(spec)
        kind = long.get("type")
        if kind not in ("bind", "volume", "tmpfs", "npipe", "cluster"):
            raise ValueError(f"volume type {kind!r} is not one of bind, volume, tmpfs")
        if not long.get("target"):
            raise ValueError("a volume needs a 'target' (the path in the container)")
        if kind == "tmpfs" and long.get("source"):
            raise ValueError("a tmpfs mount cannot have a 'source'")
        if kind == "bind" and not long.get("source"):
            raise ValueError("a bind mount needs a 'source' (the host path)")
        long["read_only"] = bool(long.get("read_only", False))
        return long
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{spec!r} is not a volume ([SOURCE:]TARGET[:MODE] or a mapping)")
    parts = spec.split(":")
    if len(parts) > 3:
        raise ValueError(f"{spec!r} is not a volume ([SOURCE:]TARGET[:MODE])")
    if len(parts) == 1:
        return {"type": "volume", "source": None, "target": parts[0], "read_only": False}
    if len(parts) == 2 and parts[1] in _MODES and parts[0].startswith("/"):
        # "/data:ro" is an anonymous volume with a mode, as docker reads it
        source, target, mode = None, parts[0], parts[1]
    else:
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ""
    if not target.startswith("/"):
        raise ValueError(f"{spec!r}: the container path {target!r} is not absolute")
    options = [option for option in mode.split(",") if option]
    for option in options:
        if option not in _MODES:
            raise ValueError(f"{spec!r}: unknown volume mode {option!r}")
    out: dict[str, Any] = {
        "type": "volume" if source is None or not source.startswith(_BIND_PREFIXES) else "bind",
        "source": source,
        "target": target,
        "read_only": "ro" in options,
    }
    if out["type"] == "bind":
        bind: dict[str, Any] = {"create_host_path": True}
        for option in options:
            if option in ("z", "Z"):
                bind["selinux"] = option
            elif option in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
                bind["propagation"] = option
        out["bind"] = bind
    elif "nocopy" in options:
        out["volume"] = {"nocopy": True}
    return out
