"""Host-side figures of a machine's hypervisor process, read from ``/proc``.

The GUI charts a machine's CPU and memory.  The cheapest honest numbers are the QEMU
process's own: its CPU time (user + system, ``/proc/PID/stat`` fields 14 and 15) and its
resident set (``/proc/PID/status`` ``VmRSS``).  CPU time is cumulative; a percentage
needs two samples, which :class:`CpuMeter` keeps per process (100 % is one host CPU
busy).  Guest-side memory would need a round trip to the guest agent (seconds under
TCG), so the configured memory is given as the ceiling instead.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuMeter", "ProcSample", "parse_stat_cpu_ticks", "parse_status_rss", "sample"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from the text of ``/proc/PID/stat``.  The command name
    (field 2) is in parentheses and may hold spaces, so fields are counted after its
    closing parenthesis."""
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15
    return int(rest[11]) + int(rest[12])


def parse_status_rss(status: str) -> int:
    """``VmRSS`` in bytes from the text of ``/proc/PID/status`` (0 when absent)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, _, unit = line.split(":", 1)[1].strip().partition(" ")
            scale = {"kB": 1024, "mB": 1024 * 1024}.get(unit.strip(), 1024)
            return int(value) * scale
    return 0


@dataclass(frozen=True, slots=True)
class ProcSample:
    pid: int
    cpu_seconds: float
    rss_bytes: int
    at: float
    """``time.monotonic()`` when read."""


def sample(pid: int, proc: Path = Path("/proc")) -> ProcSample | None:
    """One reading, or None when the process is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        status = (proc / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcSample(
        pid=pid,
        cpu_seconds=parse_stat_cpu_ticks(stat) / CLK_TCK,
        rss_bytes=parse_status_rss(status),
        at=time.monotonic(),
    )


class CpuMeter:
    """CPU % of a process since an earlier reading (None at first).  Readings closer
    than ``min_interval`` to the baseline return the last figure, so several pollers
    do not turn it into noise."""

    def __init__(self, min_interval: float = 0.5) -> None:
        self.min_interval = min_interval
        self._last: dict[int, tuple[ProcSample, float | None]] = {}

    def percent(self, now: ProcSample) -> float | None:
        before, figure = self._last.get(now.pid, (None, None))
        if before is not None and now.at - before.at < self.min_interval:
            return figure
        if before is not None:
            busy = now.cpu_seconds - before.cpu_seconds
            figure = round(max(0.0, 100.0 * busy / (now.at - before.at)), 1)
        if len(self._last) > 256:  # forget processes long gone
            self._last.clear()
        self._last[now.pid] = (now, figure)
        return figure
