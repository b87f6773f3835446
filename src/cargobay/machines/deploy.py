"""``deploy NAME PATH [--restart]``: an application copied into a sandbox and run there.

An application is a host directory or a ``.tar`` / ``.tar.gz`` archive.  Its command is
``--command`` or the ``command:`` of a ``cargobay-app.yaml`` at its top (``name:`` there
names the application; default: the directory or archive name).  Archives are unpacked
on the host with tarfile's ``data`` filter, which refuses absolute names, ``..``, links
that point outside and device files, so nothing escapes the target.

In the guest (on the data disk, so it outlives restarts):

    /root/apps/NAME/        the application, replaced as a whole (unpacked next to it,
                            then renamed over it)
    /root/apps/NAME.log     its stdout and stderr (``logs --source app``)
    /run/cargobay-apps/NAME.pid

The application runs in a session of its own (``setsid``), started through the guest
agent; ``--restart`` stops the running one (SIGTERM to its process group) first, and a
deploy over a running one without it is refused.  What is deployed is recorded on the
machine (``VMConfig.apps``: name -> command) and started again after each boot.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from cargobay.errors import Conflict, GuestError, InvalidInput

__all__ = [
    "APPS_DIR",
    "AppSource",
    "Runner",
    "app_log",
    "install",
    "is_running",
    "load_app",
    "pack",
    "start_app",
    "stop_app",
    "tail_command",
]

APPS_DIR = "/root/apps"
PID_DIR = "/run/cargobay-apps"
MANIFEST = "cargobay-app.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Runner = Callable[[list[str]], Awaitable[tuple[int, str]]]
"""Runs argv in the guest through the agent: (exit code, output)."""


@dataclass(frozen=True, slots=True)
class AppSource:
    name: str
    command: str
    root: Path
    """The application's files on the host (a temporary directory for an archive)."""


def app_log(name: str) -> str:
    return f"{APPS_DIR}/{name}.log"


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"bad application name {name!r}: use letters, digits, '.', '_' or '-' "
            "(set name: in cargobay-app.yaml)"
        )
    return name


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_app(path: Path, command: str | None, workdir: Path) -> AppSource:
    """The application at ``path`` (a directory, or an archive unpacked under
    ``workdir``), with its name and command."""
    if not path.exists():
        raise InvalidInput(f"no application at {path}")
    if path.is_dir():
        root, default_name = path, path.name
    elif tarfile.is_tarfile(path):
        root = Path(tempfile.mkdtemp(prefix="app-", dir=workdir))
        try:
            with tarfile.open(path) as archive:
                archive.extractall(root, filter="data")
        except (tarfile.TarError, OSError) as err:
            raise InvalidInput(f"cannot unpack {path}: {err}") from err
        default_name = _archive_stem(path)
    else:
        raise InvalidInput(f"{path} is neither a directory nor a .tar/.tar.gz archive")
    manifest: dict[str, object] = {}
    if (root / MANIFEST).is_file():
        try:
            loaded = yaml.safe_load((root / MANIFEST).read_text())
        except yaml.YAMLError as err:
            raise InvalidInput(f"{MANIFEST}: not valid YAML: {err}") from err
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{MANIFEST}: expected a mapping with command: (and name:)")
        manifest = loaded
    command = command or manifest.get("command")  # type: ignore[assignment]
    if not isinstance(command, str) or not command.strip():
        raise InvalidInput(
            f"no command for the application at {path}: give --command or put "
            f"command: in its {MANIFEST}"
        )
    name = manifest.get("name", default_name)
    return AppSource(_check_name(str(name)), command.strip(), root)


def pack(root: Path) -> bytes:
    """The application's files as an uncompressed tar (symlinks stay links)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in sorted(root.iterdir()):
            archive.add(entry, arcname=entry.name)
    return buffer.getvalue()


def _pid(name: str) -> str:
    return f"{PID_DIR}/{name}.pid"


async def is_running(run: Runner, name: str) -> bool:
    script = 'kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null'
    code, _ = await run(["sh", "-c", script, "sh", _pid(name)])
    return code == 0


async def stop_app(run: Runner, name: str) -> None:
    """SIGTERM to the application's process group, SIGKILL after 5 s."""
    script = (
        'pid=$(cat "$1" 2>/dev/null) || exit 0; kill -TERM -"$pid" 2>/dev/null || exit 0; '
        'for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.5; done; '
        'kill -KILL -"$pid" 2>/dev/null; rm -f "$1"'
    )
    await run(["sh", "-c", script, "sh", _pid(name)])


async def install(run: Runner, name: str, tar_path: str) -> None:
    """Unpack the uploaded tar next to the application, then swap it in."""
    target = f"{APPS_DIR}/{name}"
    script = (
        'set -e; rm -rf "$2.new"; mkdir -p "$2.new"; tar -xf "$1" -C "$2.new"; '
        'rm -rf "$2"; mv "$2.new" "$2"; rm -f "$1"'
    )
    code, out = await run(["sh", "-c", script, "sh", tar_path, target])
    if code != 0:
        raise GuestError(f"could not unpack application {name!r} in the guest: {out.strip()}")


async def start_app(run: Runner, name: str, command: str, *, restart: bool) -> None:
    if await is_running(run, name):
        if not restart:
            raise Conflict(f"application {name!r} is running; deploy with --restart to replace it")
        await stop_app(run, name)
    # The background job is the whole `setsid` line only: the pid file is written by
    # this shell once the directories exist.
    script = (
        f'mkdir -p {PID_DIR} && cd "$1" || exit 1\n'
        'setsid sh -c "$2" >> "$3" 2>&1 < /dev/null &\n'
        'echo $! > "$4"'
    )
    code, out = await run(
        ["sh", "-c", script, "sh", f"{APPS_DIR}/{name}", command, app_log(name), _pid(name)]
    )
    if code != 0:
        raise GuestError(f"could not start application {name!r}: {out.strip()}")


def tail_command(names: list[str], tail: int | None, follow: bool) -> list[str]:
    """``tail`` in the guest over the applications' logs (with ``==> file <==`` headers
    when there are several)."""
    lines = "+1" if tail is None else str(tail)
    return ["tail", "-n", lines, *(["-F"] if follow else []), *map(app_log, names)]
