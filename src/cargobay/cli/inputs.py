"""Checks of what a user typed, done before the daemon is asked anything.

The daemon validates every request again and is the authority; these checks exist so a
typo fails at once, with exit code 2, without starting a daemon or a VM.  The grammar
matches the daemon's (cargobay.machines.models): sizes are a number with an optional
binary unit (``512MB``, ``2G``, ``1.5GiB``; a bare number is MiB), ports are
``HOST:GUEST[/tcp|udp]``.  The CLI sends the normalised forms (``1536MB``, ``8080:80/tcp``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from cargobay.errors import InvalidInput

__all__ = ["format_mib", "parse_env", "parse_port", "parse_size_mib", "size_arg"]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|(B))?\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_size_mib(text: str, what: str) -> int:
    """``512MB`` -> 512, ``2G`` -> 2048, ``1.5GiB`` -> 1536, ``2048`` -> 2048 (MiB)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise InvalidInput(
            f"bad {what} {text!r}: use a number with a unit, like 512MB, 2GB or 1.5GiB"
        )
    number, unit, plain_bytes = float(m.group(1)), m.group(2), m.group(3)
    mib = (
        int(number / (1024 * 1024))
        if plain_bytes
        else int(number * _MIB_PER_UNIT[(unit or "M").upper()])
    )
    if mib <= 0:
        raise InvalidInput(f"{what} {text!r} is less than 1 MiB; use a size like 512MB")
    return mib


def size_arg(text: str | None, what: str) -> str | None:
    """A size option as the daemon wants it (``NNNMB``), or None when not given."""
    return None if text is None else f"{parse_size_mib(text, what)}MB"


def format_mib(mib: int | float | None) -> str:
    """512 -> ``512 MiB``, 2048 -> ``2 GiB``, 1536 -> ``1.5 GiB``."""
    if mib is None:
        return "-"
    if mib >= 1024:
        gib = mib / 1024
        return f"{gib:.0f} GiB" if gib == int(gib) else f"{gib:.1f} GiB"
    return f"{mib:.0f} MiB"


def parse_port(text: str) -> str:
    """``8080:80`` -> ``8080:80/tcp``; raises InvalidInput naming the mistake."""
    spec, _, proto = text.strip().partition("/")
    proto = (proto or "tcp").lower()
    host, sep, guest = spec.partition(":")
    if not sep or proto not in ("tcp", "udp"):
        raise InvalidInput(
            f"bad port mapping {text!r}: use HOST:GUEST or HOST:GUEST/udp, like 8080:80"
        )
    try:
        numbers = (int(host), int(guest))
    except ValueError:
        numbers = (0, 0)
    if not all(1 <= n <= 65535 for n in numbers):
        raise InvalidInput(f"bad port mapping {text!r}: ports are numbers from 1 to 65535")
    return f"{numbers[0]}:{numbers[1]}/{proto}"


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` options -> a dict."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or "\0" in item:
            raise InvalidInput(f"bad environment variable {item!r}: use KEY=VALUE")
        env[key] = value
    return env


def command_text(argv: list[str], limit: int = 60) -> str:
    """A command line for display, shortened to ``limit`` characters."""
    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."
