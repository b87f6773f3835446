"""Platform layers (seed 004's PAL) and their registry.

``available()`` names the layers this host can use: exactly one, chosen by
``sys.platform`` in this one function (linux, darwin -> macos, win32 -> windows); the
others exist as code and tests only.  ``current(config)`` builds the host's layer from
config.yaml's ``platform`` section.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from cargobay.config.settings import Config
from cargobay.errors import PlatformError
from cargobay.platforms.base import PlatformFeatures, PlatformLayer, PlatformStatus
from cargobay.platforms.linux import LinuxPlatform
from cargobay.platforms.macos import MacOSPlatform
from cargobay.platforms.windows import WindowsPlatform

__all__ = [
    "PlatformFeatures",
    "PlatformLayer",
    "PlatformStatus",
    "available",
    "current",
]

_FACTORIES: dict[str, Callable[[Config], PlatformLayer]] = {
    "linux": lambda c: LinuxPlatform(qemu_binary=c.platform.linux.qemu_binary),
    "macos": lambda c: MacOSPlatform(c.platform.macos),
    "windows": lambda c: WindowsPlatform(c.platform.windows),
}


def available(platform: str | None = None) -> list[str]:
    """The layers registered on ``platform`` (default: this host's ``sys.platform``)."""
    plat = sys.platform if platform is None else platform
    if plat.startswith("linux"):
        return ["linux"]
    if plat == "darwin":
        return ["macos"]
    if plat == "win32":
        return ["windows"]
    return []


def current(config: Config | None = None, platform: str | None = None) -> PlatformLayer:
    """This host's layer, configured from ``config``."""
    names = available(platform)
    if not names:
        raise PlatformError(
            f"CargoBay has no platform layer for {platform or sys.platform}; "
            "it runs on Linux, macOS (Lima) and Windows (WSL2)"
        )
    return _FACTORIES[names[0]](config or Config())
