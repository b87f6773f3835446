"""Where CargoBay keeps things, following the XDG base directories.

    data     $XDG_DATA_HOME/cargobay     (~/.local/share/cargobay)   images, VM disks
    state    $XDG_STATE_HOME/cargobay    (~/.local/state/cargobay)   the SQLite store, logs
    cache    $XDG_CACHE_HOME/cargobay    (~/.cache/cargobay)         downloads, the KVM probe
    runtime  $XDG_RUNTIME_DIR/cargobay, else /run/cargobay for root, else /tmp/cargobay-UID
                                                                     sockets, pid files
    config   $XDG_CONFIG_HOME/cargobay   (~/.config/cargobay)        config.yaml

``CARGOBAY_HOME=DIR`` puts all five under DIR (tests use it; the runtime part is kept
short because Unix socket paths are limited to 107 bytes).  ``CARGOBAY_IMAGES=DIR``
moves just the image store, so many test homes can share one built image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Paths"]

_SUN_PATH_MAX = 107


@dataclass(frozen=True, slots=True)
class Paths:
    data: Path
    state: Path
    cache: Path
    runtime: Path
    images_override: Path | None = None
    config_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        images = env.get("CARGOBAY_IMAGES")
        images_override = Path(images).absolute() if images else None
        home = env.get("CARGOBAY_HOME")
        if home:
            base = Path(home).absolute()
            return cls(
                base / "data",
                base / "state",
                base / "cache",
                base / "run",
                images_override,
                base / "config",
            )
        user_home = Path(env.get("HOME") or Path.home())

        def xdg(var: str, default: Path) -> Path:
            value = env.get(var)
            return (Path(value) if value and os.path.isabs(value) else default) / "cargobay"

        runtime_base = env.get("XDG_RUNTIME_DIR")
        if runtime_base and os.path.isabs(runtime_base):
            runtime = Path(runtime_base) / "cargobay"
        elif os.geteuid() == 0:
            runtime = Path("/run/cargobay")
        else:
            runtime = Path(f"/tmp/cargobay-{os.geteuid()}")
        return cls(
            data=xdg("XDG_DATA_HOME", user_home / ".local" / "share"),
            state=xdg("XDG_STATE_HOME", user_home / ".local" / "state"),
            cache=xdg("XDG_CACHE_HOME", user_home / ".cache"),
            runtime=runtime,
            images_override=images_override,
            config_dir=xdg("XDG_CONFIG_HOME", user_home / ".config"),
        )

    # -- well-known locations -----------------------------------------------------------

    @property
    def images(self) -> Path:
        return self.images_override or self.data / "images"

    @property
    def machines(self) -> Path:
        """Per-machine persistent files (data disk, console log): machines/<id>/."""
        return self.data / "machines"

    @property
    def config(self) -> Path:
        """The configuration directory (``config.yaml``); next to data when not set."""
        return self.config_dir or self.data.parent / "config"

    @property
    def config_file(self) -> Path:
        return self.config / "config.yaml"

    @property
    def db(self) -> Path:
        return self.state / "cargobay.db"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def daemon_socket(self) -> Path:
        return self.runtime / "cargobayd.sock"

    @property
    def daemon_pidfile(self) -> Path:
        return self.runtime / "cargobayd.pid"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "cargobayd.log"

    def machine_run_dir(self, machine_id: str) -> Path:
        """Sockets of one running machine (QMP, agent channel); short ids keep paths short."""
        path = self.runtime / "vm" / machine_id[:12]
        if len(str(path)) + len("/qga.sock") > _SUN_PATH_MAX:
            raise ValueError(
                f"runtime directory {self.runtime} is too long for Unix socket paths; "
                "set XDG_RUNTIME_DIR or CARGOBAY_HOME to a shorter directory"
            )
        return path

    def ensure(self) -> None:
        """Create the directories (the runtime one private to this user)."""
        for path in (self.data, self.state, self.cache, self.images, self.machines, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
