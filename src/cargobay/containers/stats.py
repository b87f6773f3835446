"""Container resource usage with the formulas ``docker stats`` uses.

The Engine sends one JSON sample per second (``GET /containers/{id}/stats``), each
carrying the previous CPU reading in ``precpu_stats``, so one sample is enough:

* CPU % = (cpu_delta / system_delta) x online CPUs x 100, where cpu_delta is the change
  of ``cpu_usage.total_usage`` and system_delta of ``system_cpu_usage``; online CPUs are
  ``online_cpus``, else the length of ``percpu_usage`` (old kernels), else 1.  Zero when
  either delta is not positive (the first sample has no previous reading).
* memory = ``usage`` minus the page cache the kernel can drop: ``inactive_file`` under
  cgroup v2, ``total_inactive_file`` under cgroup v1 (only when smaller than usage);
  memory % = memory / ``limit`` x 100.
* network rx/tx = sums of ``rx_bytes``/``tx_bytes`` over every interface.
* block I/O read/write = sums of ``blkio_stats.io_service_bytes_recursive`` entries
  whose ``op`` is Read/Write (either case: cgroup v2 reports lowercase).

:func:`compute` is pure (unit-tested on recorded samples); :func:`stream_stats` runs it
over the Engine's stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

from cargobay.containers.engine import DockerEngine
from cargobay.containers.merge import merge

__all__ = ["ContainerStats", "compute", "stream_stats", "stream_stats_many"]


class ContainerStats(BaseModel):
    id: str
    name: str
    read: str | None = None
    cpu_percent: float
    online_cpus: int
    memory_usage: int
    memory_limit: int
    memory_percent: float
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def cpu_percent(sample: dict[str, Any]) -> tuple[float, int]:
    cpu = sample.get("cpu_stats") or {}
    pre = sample.get("precpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    pre_usage = pre.get("cpu_usage") or {}
    online = _int(cpu.get("online_cpus")) or len(usage.get("percpu_usage") or []) or 1
    cpu_delta = _int(usage.get("total_usage")) - _int(pre_usage.get("total_usage"))
    system_delta = _int(cpu.get("system_cpu_usage")) - _int(pre.get("system_cpu_usage"))
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0, online
    return cpu_delta / system_delta * online * 100.0, online


def memory_usage(sample: dict[str, Any]) -> tuple[int, int]:
    memory = sample.get("memory_stats") or {}
    usage = _int(memory.get("usage"))
    stats = memory.get("stats") or {}
    if "total_inactive_file" in stats:  # cgroup v1
        inactive = _int(stats["total_inactive_file"])
    else:  # cgroup v2
        inactive = _int(stats.get("inactive_file"))
    if inactive < usage:
        usage -= inactive
    return usage, _int(memory.get("limit"))


def network_bytes(sample: dict[str, Any]) -> tuple[int, int]:
    networks = sample.get("networks") or {}
    rx = sum(_int(iface.get("rx_bytes")) for iface in networks.values())
    tx = sum(_int(iface.get("tx_bytes")) for iface in networks.values())
    return rx, tx


def block_io(sample: dict[str, Any]) -> tuple[int, int]:
    entries = (sample.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = write = 0
    for entry in entries:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += _int(entry.get("value"))
        elif op == "write":
            write += _int(entry.get("value"))
    return read, write


def compute(sample: dict[str, Any], *, container_id: str = "", name: str = "") -> ContainerStats:
    """One sample from the Engine -> the numbers ``docker stats`` shows."""
    cpu, online = cpu_percent(sample)
    used, limit = memory_usage(sample)
    rx, tx = network_bytes(sample)
    read, write = block_io(sample)
    return ContainerStats(
        id=str(sample.get("id") or container_id),
        name=str(sample.get("name") or name).lstrip("/"),
        read=sample.get("read"),
        cpu_percent=round(cpu, 3),
        online_cpus=online,
        memory_usage=used,
        memory_limit=limit,
        memory_percent=round(used / limit * 100.0, 3) if limit else 0.0,
        net_rx=rx,
        net_tx=tx,
        block_read=read,
        block_write=write,
        pids=_int((sample.get("pids_stats") or {}).get("current")),
    )


async def stream_stats(
    engine: DockerEngine, container: str, *, stream: bool = True, samples: int | None = None
) -> AsyncIterator[ContainerStats]:
    """Computed samples of ``container`` (``stream=False``: one, with a real CPU delta;
    ``samples``: stop after that many)."""
    count = 0
    async for sample in engine.container_stats(container, stream=stream):
        yield compute(sample, container_id=container)
        count += 1
        if samples is not None and count >= samples:
            return


async def stream_stats_many(
    engine: DockerEngine,
    containers: list[str],
    *,
    stream: bool = True,
    samples: int | None = None,
) -> AsyncIterator[ContainerStats]:
    """Samples of several containers, merged as they arrive (each container's stream runs
    concurrently; ``samples`` counts per container).  The first error ends it all."""
    sources = (stream_stats(engine, c, stream=stream, samples=samples) for c in containers)
    async for sample in merge(sources):
        yield sample
