"""Saving and loading a QEMU VM's state over QMP: the migration-to-file core of snapshots.

QEMU 7.2 has no ``file:`` migration URI, so the state goes through ``exec:`` (QEMU runs
``/bin/sh -c 'cat > FILE'`` and writes the stream to its stdin; loading runs
``cat FILE``).  Both sides poll ``query-migrate`` until the migration completes or fails.

``ignore_shared`` sets the ``x-ignore-shared`` capability: RAM blocks backed by a shared
file are left out of the stream, so the stream is only device state (tens of KiB) and
the RAM stays in the file.  That is how shared-memory templates work (Kata's VM
templating): the template's RAM file is mapped privately (copy-on-write) by every clone
started from it, and each clone loads the small device-state stream.

Invariants: ``save`` leaves the VM paused (the caller resumes it or lets it go);
``load`` runs on a VM started with ``-incoming defer`` and resumes it unless asked not
to.  A failed migration raises ``HypervisorError`` with QEMU's own reason.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path
from typing import Any, Protocol

from cargobay.errors import HypervisorError

__all__ = ["POLL_INTERVAL", "load", "save"]

POLL_INTERVAL = 0.005
"""Seconds between ``query-migrate`` polls (a device-only stream completes in ~10 ms)."""


class _Executor(Protocol):
    async def execute(self, cmd: str, arguments: dict[str, Any] | None = None) -> object: ...


async def save(qmp: _Executor, path: Path, *, ignore_shared: bool) -> None:
    """Pause the VM and write its state to ``path`` (replaced atomically)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    await qmp.execute("stop")
    await _set_ignore_shared(qmp, ignore_shared)
    await qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(partial))}"})
    await _wait_migration(qmp, "saving the VM's state")
    partial.replace(path)


async def load(qmp: _Executor, path: Path, *, ignore_shared: bool, resume: bool = True) -> None:
    """Load ``path`` into a VM waiting with ``-incoming defer``; then ``cont`` if ``resume``."""
    if not Path(path).is_file():  # noqa: ASYNC240 - one stat
        raise HypervisorError(f"the saved state {path} is missing")
    await _set_ignore_shared(qmp, ignore_shared)
    await qmp.execute("migrate-incoming", {"uri": f"exec:cat {shlex.quote(str(path))}"})
    await _wait_migration(qmp, "loading the VM's state")
    status = await qmp.execute("query-status")
    running = isinstance(status, dict) and status.get("status") == "running"
    if resume and not running:
        await qmp.execute("cont")


async def _set_ignore_shared(qmp: _Executor, on: bool) -> None:
    await qmp.execute(
        "migrate-set-capabilities",
        {"capabilities": [{"capability": "x-ignore-shared", "state": on}]},
    )


async def _wait_migration(qmp: _Executor, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = await qmp.execute("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            reason = info.get("error-desc", "no reason given") if isinstance(info, dict) else ""
            raise HypervisorError(f"{what} failed: {reason}")
        if time.monotonic() > deadline:
            raise HypervisorError(f"{what} did not finish within {timeout:.0f} s ({status})")
        await asyncio.sleep(POLL_INTERVAL)
