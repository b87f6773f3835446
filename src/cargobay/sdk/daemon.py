"""Starting cargobayd when it is not running: ``ensure_daemon``.

The daemon is started detached: a new session (so it survives the terminal and the
caller's process group), stdin from /dev/null, stdout and stderr appended to the daemon
log.  The directories it uses reach it through the environment (``CARGOBAY_HOME`` or the
XDG variables, ``CARGOBAY_IMAGES``), derived from the ``Paths`` given, so the daemon
serves exactly the socket the caller will connect to.

Two callers racing to start it are fine: the daemon's pid-file lock lets one win, the
other exits at once, and both callers see the winner answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cargobay.errors import DaemonError
from cargobay.paths import Paths
from cargobay.sdk.client import CargoBayClient

__all__ = ["daemon_environment", "ensure_daemon"]


def daemon_environment(paths: Paths, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``Paths.from_env()`` gives ``paths``."""
    env = dict(os.environ if base is None else base)
    if _same(Paths.from_env(env), paths):
        return env
    for var in ("CARGOBAY_HOME", "CARGOBAY_IMAGES"):
        env.pop(var, None)
    if paths.images_override is not None:
        env["CARGOBAY_IMAGES"] = str(paths.images_override)
    home = paths.data.parent
    if paths.state.parent == home and paths.cache.parent == home and paths.runtime.parent == home:
        env["CARGOBAY_HOME"] = str(home)
    else:
        for var, path in (
            ("XDG_DATA_HOME", paths.data),
            ("XDG_STATE_HOME", paths.state),
            ("XDG_CACHE_HOME", paths.cache),
            ("XDG_RUNTIME_DIR", paths.runtime),
        ):
            if path.name == "cargobay":
                env[var] = str(path.parent)
        if paths.config_dir is not None and paths.config_dir.name == "cargobay":
            env["XDG_CONFIG_HOME"] = str(paths.config_dir.parent)
    if not _same(Paths.from_env(env), paths):
        raise DaemonError(
            f"cannot start cargobayd for these directories ({paths}); "
            "set CARGOBAY_HOME or the XDG variables instead"
        )
    return env


def _same(got: Paths, wanted: Paths) -> bool:
    """Whether the environment's ``got`` is ``wanted``; a ``wanted`` without a config
    directory of its own takes the environment's (the daemon reads config.yaml there)."""
    if wanted.config_dir is None:
        got = dataclasses.replace(got, config_dir=None)
    return got == wanted


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return ("; the daemon log ends with:\n" + "\n".join(tail)) if tail else ""


@contextlib.contextmanager
def _start_lock(paths: Paths, deadline: float) -> Iterator[None]:
    """Only one process at a time starts cargobayd.  Without this, racing callers each
    spawned a daemon and relied on the pid-file lock to make the extras exit; a slow
    extra that reached the lock after the winner had already been stopped became a
    daemon nobody asked for."""
    paths.ensure()
    fd = os.open(paths.runtime / "cargobayd.start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DaemonError(
                        "another process is starting cargobayd and has not finished; "
                        f"see {paths.daemon_log}"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_daemon(paths: Paths | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Make sure cargobayd answers on ``paths.daemon_socket``; start it if needed.

    Returns the daemon's ``/v1/info``.  Raises ``DaemonError`` (with the end of the
    daemon log) when it does not answer within ``timeout`` seconds or exits at once."""
    paths = paths or Paths.from_env()
    deadline = time.monotonic() + timeout
    with CargoBayClient(paths=paths) as client:
        try:
            return client.info()
        except DaemonError:
            pass
        with _start_lock(paths, deadline):
            try:
                return client.info()  # started by whoever held the lock before us
            except DaemonError:
                pass
            return _spawn_and_wait(paths, client, deadline, timeout)


def _spawn_and_wait(
    paths: Paths, client: CargoBayClient, deadline: float, timeout: float
) -> dict[str, Any]:
    """Start cargobayd detached (its own session, output to the daemon log) and wait
    until it answers; the caller holds the start lock."""
    with paths.daemon_log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cargobay.daemon.server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=daemon_environment(paths),
            start_new_session=True,
            close_fds=True,
        )
    exited_at: float | None = None
    while True:
        try:
            return client.info()
        except DaemonError:
            pass
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            # Started outside ensure_daemon by someone else (it answers soon), or failed.
            exited_at = now
        if exited_at is not None and now - exited_at > 2.0:
            raise DaemonError(
                f"cargobayd exited at once with status {proc.returncode}"
                + _log_tail(paths.daemon_log)
            )
        if now > deadline:
            raise DaemonError(
                f"cargobayd did not answer on {paths.daemon_socket} within {timeout:g} s"
                + _log_tail(paths.daemon_log)
            )
        time.sleep(0.05)
