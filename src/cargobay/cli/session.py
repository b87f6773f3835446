"""Reaching cargobayd: the one place the CLI makes an SDK client.

The CLI talks to the services only through the daemon (ARCHITECTURE.md).  When the
daemon's socket does not answer, the CLI starts it (``sdk.ensure_daemon``: detached, in
its own session, output to the daemon log) and says so in one line on stderr; the
daemon then outlives the CLI.  ``CARGOBAY_AUTOSTART=0`` turns that off (the command then
fails with exit code 5 and the SDK's "start it with `cargobay daemon start`").
"""

from __future__ import annotations

import os
import sys
from typing import Any

from cargobay.errors import DaemonError
from cargobay.paths import Paths

__all__ = [
    "DAEMON_START_TIMEOUT",
    "autostart_enabled",
    "connect",
    "current_paths",
    "make_client",
    "probe",
    "start_daemon",
]

DAEMON_START_TIMEOUT = 30.0


def current_paths() -> Paths:
    return Paths.from_env()


def autostart_enabled() -> bool:
    return os.environ.get("CARGOBAY_AUTOSTART", "1").strip().lower() not in ("0", "false", "no")


def make_client(paths: Paths) -> Any:
    from cargobay.sdk import CargoBayClient

    return CargoBayClient(paths=paths)


def probe(client: Any) -> dict[str, Any] | None:
    """The daemon's /v1/info, or None when it does not answer."""
    try:
        info = client.info()
    except DaemonError:
        return None
    return dict(info) if not isinstance(info, dict) else info


def start_daemon(paths: Paths, client: Any, *, quiet: bool = False) -> tuple[dict[str, Any], bool]:
    """Make sure the daemon runs: (its info, whether this call started it)."""
    info = probe(client)
    if info is not None:
        return info, False
    if not quiet:
        print(
            f"note: cargobayd is not running; starting it (log: {paths.daemon_log})",
            file=sys.stderr,
            flush=True,
        )
    from cargobay.sdk import ensure_daemon

    return dict(ensure_daemon(paths, timeout=DAEMON_START_TIMEOUT)), True


def connect(*, autostart: bool | None = None) -> Any:
    """An SDK client for the daemon of this user (CARGOBAY_HOME honoured), started if needed."""
    paths = current_paths()
    client = make_client(paths)
    if autostart is None:
        autostart = autostart_enabled()
    if autostart:
        start_daemon(paths, client)
    return client
