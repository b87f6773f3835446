"""A machine's metrics (seed 004 section 5.1, ``VMMetrics``): CPU, memory, disk and network
I/O, uptime, seen from the host and from the guest.

Host side, no guest round trip:

- the QEMU process from ``/proc/PID``: CPU time (``stat`` fields 14 + 15) turned into a
  percentage between two readings (:class:`CpuMeter`; 100 % is one host CPU), resident
  memory (``status`` ``VmRSS``) and uptime (now minus ``stat`` field 22, the start time in
  clock ticks after boot, against ``/proc/uptime``);
- disk I/O per drive from the hypervisor backend (QMP ``query-blockstats`` for QEMU);
- network I/O: ``None``.  The machines use QEMU user-mode networking, and QMP has no
  per-netdev byte counters for it (``query-rx-filter`` has none; ``-netdev user`` keeps no
  statistics), so there is no honest host-side figure.

Guest side, through the guest agent's file read (no new agent operation): ``/proc/meminfo``
(total/used/available/cache), ``/proc/stat`` (guest CPU % between two readings) and
``/proc/uptime``.  Each guest read is bounded by a timeout; a guest that does not answer
leaves ``guest`` empty and says why in ``guest_error``, the host figures stay.

The parsing and arithmetic are pure functions (unit-tested on captured texts).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from cargobay.errors import CargoBayError
from cargobay.hypervisors.base import BlockStatsSource, VMHandle
from cargobay.machines.models import VMInstance, VMStateKind

if TYPE_CHECKING:
    from cargobay.machines.service import MachineService

__all__ = [
    "CpuMeter",
    "DiskIO",
    "GuestMetrics",
    "MachineMetrics",
    "MemoryMetrics",
    "MetricsCollector",
    "NetworkIO",
    "ProcSample",
    "cpu_percent",
    "parse_meminfo",
    "parse_proc_pid_stat",
    "parse_proc_stat_cpu",
    "parse_status_rss",
    "parse_uptime",
]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
GUEST_TIMEOUT = 5.0
NETWORK_NOTE = (
    "not measured: QEMU user-mode networking keeps no per-NIC byte counters that QMP reports"
)


# -- models -------------------------------------------------------------------------------


class DiskIO(BaseModel):
    drive: str = Field(description="the hypervisor's drive id (root, data)")
    read_bytes: int
    write_bytes: int
    read_ops: int
    write_ops: int


class NetworkIO(BaseModel):
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    note: str | None = Field(default=None, description="why a figure is None")


class MemoryMetrics(BaseModel):
    """The seed's ``MemoryMetrics``, from the guest's ``/proc/meminfo`` (MiB)."""

    total_mb: int
    used_mb: int = Field(description="total - available")
    available_mb: int
    cache_mb: int = Field(description="Cached + Buffers + SReclaimable")


class GuestMetrics(BaseModel):
    memory: MemoryMetrics
    cpu_percent: float | None = Field(
        description="guest CPU busy % (all vCPUs = 100) since the previous reading; "
        "None on the first reading"
    )
    uptime_seconds: float


class MachineMetrics(BaseModel):
    name: str
    state: str
    pid: int | None = Field(description="the hypervisor process (None: not running)")
    cpu_percent: float | None = Field(
        description="host CPU % of that process since the previous reading (100 = one CPU); "
        "None on the first reading"
    )
    cpu_seconds: float | None
    rss_bytes: int | None
    memory_limit_bytes: int = Field(description="the machine's configured memory")
    time: datetime
    uptime_seconds: float | None = Field(
        default=None, description="how long the hypervisor process has run"
    )
    disks: list[DiskIO] = Field(default_factory=list, description="per-drive I/O counters")
    disk_error: str | None = None
    network: NetworkIO | None = Field(default=None, description="None: the machine has no NIC")
    guest: GuestMetrics | None = Field(default=None, description="from the guest's /proc")
    guest_error: str | None = None


# -- parsing (pure) -----------------------------------------------------------------------


def parse_proc_pid_stat(stat: str) -> tuple[int, int]:
    """(utime + stime, starttime), both in clock ticks, from ``/proc/PID/stat``.  The
    command name (field 2) is in parentheses and may hold spaces or parentheses, so fields
    are counted after its last closing parenthesis."""
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3; utime is field 14, stime 15, starttime 22
    return int(rest[11]) + int(rest[12]), int(rest[19])


def parse_status_rss(status: str) -> int:
    """``VmRSS`` in bytes from ``/proc/PID/status`` (0 when absent, as for a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_uptime(text: str) -> float:
    """Seconds since boot, the first figure of ``/proc/uptime``."""
    return float(text.split()[0])


def parse_meminfo(text: str) -> MemoryMetrics:
    """``/proc/meminfo`` (kB values) as MiB figures.  ``MemAvailable`` is required (Linux
    3.14 and later have it)."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.split():
            kb[key.strip()] = int(value.split()[0])
    try:
        total, available = kb["MemTotal"], kb["MemAvailable"]
    except KeyError as err:
        raise ValueError(f"/proc/meminfo has no {err.args[0]} line") from err
    cache = kb.get("Cached", 0) + kb.get("Buffers", 0) + kb.get("SReclaimable", 0)
    return MemoryMetrics(
        total_mb=total // 1024,
        used_mb=(total - available) // 1024,
        available_mb=available // 1024,
        cache_mb=cache // 1024,
    )


def parse_proc_stat_cpu(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the ``cpu`` line of ``/proc/stat``.  Idle is
    idle + iowait; guest/guest_nice are already inside user/nice and are not added again."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values)
            return total - idle, total
    raise ValueError("/proc/stat has no cpu line")


def cpu_percent(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Busy share (0-100) between two (busy, total) readings; None when no time passed
    (or the counters went back, as after a guest reboot)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0 or busy < 0:
        return None
    return round(100.0 * busy / total, 1)


# -- host readings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcSample:
    pid: int
    cpu_seconds: float
    rss_bytes: int
    uptime_seconds: float
    at: float
    """``time.monotonic()`` when read."""


def sample(pid: int, proc: Path = Path("/proc")) -> ProcSample | None:
    """One reading of process ``pid``, or None when it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        status = (proc / str(pid) / "status").read_text()
        host_uptime = parse_uptime((proc / "uptime").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None
    ticks, start = parse_proc_pid_stat(stat)
    return ProcSample(
        pid=pid,
        cpu_seconds=ticks / CLK_TCK,
        rss_bytes=parse_status_rss(status),
        uptime_seconds=round(max(0.0, host_uptime - start / CLK_TCK), 2),
        at=time.monotonic(),
    )


class CpuMeter:
    """CPU % of a process since an earlier reading (None at first).  Readings closer than
    ``min_interval`` to the baseline return the last figure, so several pollers do not
    turn it into noise."""

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


# -- the collector ------------------------------------------------------------------------


class MetricsCollector:
    """Gathers :class:`MachineMetrics` for the daemon; keeps the previous readings that
    percentages need (host per QEMU pid, guest per machine id)."""

    def __init__(self, service: MachineService, guest_timeout: float = GUEST_TIMEOUT) -> None:
        self.service = service
        self.guest_timeout = guest_timeout
        self._host = CpuMeter()
        self._guest_cpu: dict[str, tuple[int, int]] = {}

    async def collect(self, name: str, *, guest: bool = True) -> MachineMetrics:
        """The metrics of machine ``name``; ``guest=False`` skips the guest agent."""
        from cargobay.hypervisors.process import is_same_process

        vm = self.service.get_machine(name)
        raw = vm.runtime.handle or {}
        live = vm.state.kind in (VMStateKind.RUNNING, VMStateKind.PAUSED, VMStateKind.STOPPING)
        pid = raw.get("pid") if live else None
        reading = None
        if isinstance(pid, int):
            extra = raw.get("extra") or {}
            if is_same_process(pid, extra.get("proc_start"), extra.get("boot_id"), vm.id):
                reading = sample(pid)
        metrics = MachineMetrics(
            name=vm.name,
            state=vm.state.kind.value,
            pid=reading.pid if reading else None,
            cpu_percent=self._host.percent(reading) if reading else None,
            cpu_seconds=round(reading.cpu_seconds, 2) if reading else None,
            rss_bytes=reading.rss_bytes if reading else None,
            memory_limit_bytes=vm.config.memory_mb * 1024 * 1024,
            time=datetime.now(UTC),
            uptime_seconds=reading.uptime_seconds if reading else None,
        )
        if reading is None:
            return metrics
        await self._disks(vm, raw, metrics)
        if vm.config.ports:  # a user-mode NIC exists only when ports are forwarded
            metrics.network = NetworkIO(note=NETWORK_NOTE)
        if guest and vm.state.kind is VMStateKind.RUNNING:
            await self._guest(vm, metrics)
        return metrics

    async def _disks(self, vm: VMInstance, raw: dict[str, Any], metrics: MachineMetrics) -> None:
        hv = self.service.hypervisor(vm.config.backend)
        if not isinstance(hv, BlockStatsSource):
            metrics.disk_error = f"the {vm.config.backend} backend does not report disk I/O"
            return
        try:
            stats = await hv.block_stats(VMHandle.from_dict(raw))
        except CargoBayError as err:
            metrics.disk_error = str(err)
            return
        metrics.disks = [DiskIO(**s) for s in stats]

    async def _guest(self, vm: VMInstance, metrics: MachineMetrics) -> None:
        async def read(path: str) -> str:
            data = await self.service.read_file(vm.name, path, max_bytes=1 << 20)
            return data.decode("utf-8", "replace")

        try:
            async with asyncio.timeout(self.guest_timeout):
                meminfo = await read("/proc/meminfo")
                stat = await read("/proc/stat")
                uptime = await read("/proc/uptime")
            memory = parse_meminfo(meminfo)
            cpu_now = parse_proc_stat_cpu(stat)
            guest_uptime = parse_uptime(uptime)
        except TimeoutError:
            metrics.guest_error = f"the guest agent did not answer within {self.guest_timeout:g} s"
            return
        except (CargoBayError, ValueError) as err:
            metrics.guest_error = f"cannot read the guest's /proc: {err}"
            return
        before = self._guest_cpu.get(vm.id)
        self._guest_cpu[vm.id] = cpu_now
        metrics.guest = GuestMetrics(
            memory=memory,
            cpu_percent=cpu_percent(before, cpu_now) if before else None,
            uptime_seconds=guest_uptime,
        )
