"""VM processes that are not our children: identity, liveness, killing, log tails.

A VM process outlives the daemon that started it (QEMU daemonizes: after its double fork
it is a child of init, which reaps it, so there is never anything for us to reap), and a
later daemon finds it again by pid.  A pid alone is not an identity: once the process has
exited, the kernel may give the number to an unrelated process.  So a handle records the
process's start time (field 22 of /proc/PID/stat, in clock ticks since boot) and the
host's boot id; a pid is "ours" only while both still match, and nothing is signalled
otherwise.  A zombie counts as gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

__all__ = [
    "alive",
    "boot_id",
    "is_same_process",
    "kill_hard",
    "kill_processes_with_arg",
    "log_tail",
    "pids_with_args",
    "read_pidfile",
    "start_time",
    "wait_gone",
]

log = logging.getLogger(__name__)


def boot_id() -> str:
    """This host boot's random id ("" where /proc does not say)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm)": field 3 (state) is index 0."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # comm may contain spaces and ')'


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), as /proc writes it."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat_fields(pid) if pid > 0 else None
    return fields is not None and bool(fields) and fields[0] not in ("Z", "X")


def is_same_process(
    pid: int, start: str | None, boot: str | None, cmdline_needle: str | None = None
) -> bool:
    """``pid`` is alive and is the process that had ``start`` time in boot ``boot``.

    Without a recorded start time (an older handle), fall back to finding
    ``cmdline_needle`` in the process's command line."""
    if not alive(pid):
        return False
    if start and boot:
        return boot == boot_id() and start_time(pid) == start
    if not cmdline_needle:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline_needle.encode() in cmdline


async def wait_gone(
    pid: int, start: str | None, boot: str | None, timeout: float, needle: str | None = None
) -> bool:
    """Poll until the process is gone (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while is_same_process(pid, start, boot, needle):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def kill_hard(pid: int) -> None:
    """SIGKILL ``pid``; already gone is fine.  Callers check identity first."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pids_with_args(*args: str) -> list[int]:
    """Live processes whose argv contains ``args`` as consecutive elements."""
    wanted = b"\0" + b"\0".join(a.encode() for a in args) + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = b"\0" + Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if wanted in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def kill_processes_with_arg(*args: str, timeout: float = 5.0) -> None:
    """SIGKILL every process whose argv has ``args`` until none is left (bounded).

    Catches a launch at any stage: a process mid-fork shows up on the next scan."""
    deadline = time.monotonic() + timeout
    while pids := pids_with_args(*args):
        for pid in pids:
            kill_hard(pid)
        if time.monotonic() >= deadline:
            log.warning("processes %s (%s) survive SIGKILL", pids, " ".join(args))
            return
        await asyncio.sleep(0.02)


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` non-blank lines of a (possibly large) log file; "" if unreadable."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])
