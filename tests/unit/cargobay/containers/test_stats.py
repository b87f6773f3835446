"""docker stats formulas on Engine samples (cgroup v1 as dockerd 20.10 sent it here, and
cgroup v2 in the shape the Engine documents)."""

from __future__ import annotations

from typing import Any

import pytest

from cargobay.containers.resources import ContainerSummary
from cargobay.containers.stats import block_io, compute, cpu_percent, memory_usage

V1: dict[str, Any] = {
    "read": "2026-11-22T04:49:18.149244539Z",
    "name": "/trusting_cori",
    "id": "8aa52404",
    "pids_stats": {"current": 1},
    "cpu_stats": {
        "cpu_usage": {"total_usage": 3_000_000_000, "percpu_usage": [2_000_000_000, 1_000_000_000]},
        "system_cpu_usage": 40_000_000_000,
        "online_cpus": 2,
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 2_000_000_000},
        "system_cpu_usage": 38_000_000_000,
        "online_cpus": 2,
    },
    "memory_stats": {
        "usage": 19021824,
        "limit": 25276510208,
        "stats": {"inactive_file": 17018880, "total_inactive_file": 17018880, "cache": 17969152},
    },
    "networks": {
        "eth0": {"rx_bytes": 1072, "tx_bytes": 336},
        "eth1": {"rx_bytes": 28, "tx_bytes": 64},
    },
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 4096},
            {"major": 8, "minor": 0, "op": "Write", "value": 8192},
            {"major": 8, "minor": 0, "op": "Sync", "value": 12288},
            {"major": 8, "minor": 0, "op": "Total", "value": 12288},
            {"major": 8, "minor": 16, "op": "Read", "value": 1},
        ]
    },
}

V2: dict[str, Any] = {
    "name": "/web",
    "id": "v2",
    "pids_stats": {"current": 7, "limit": 4915},
    "cpu_stats": {
        "cpu_usage": {"total_usage": 1_500_000, "usage_in_kernelmode": 1, "usage_in_usermode": 2},
        "system_cpu_usage": 10_000_000,
        "online_cpus": 4,
    },
    "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 8_000_000},
    "memory_stats": {
        "usage": 10_000_000,
        "limit": 100_000_000,
        "stats": {"inactive_file": 4_000_000, "active_file": 1_000_000, "anon": 5_000_000},
    },
    "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 254, "minor": 0, "op": "read", "value": 1000},
            {"major": 254, "minor": 0, "op": "write", "value": 2000},
        ]
    },
}


def test_cgroup_v1_sample() -> None:
    stats = compute(V1)
    # (1e9 / 2e9) * 2 CPUs * 100
    assert stats.cpu_percent == 100.0
    assert stats.online_cpus == 2
    assert stats.memory_usage == 19021824 - 17018880  # minus total_inactive_file
    assert stats.memory_limit == 25276510208
    assert stats.memory_percent == round(2002944 / 25276510208 * 100, 3)
    assert (stats.net_rx, stats.net_tx) == (1100, 400)
    assert (stats.block_read, stats.block_write) == (4097, 8192)
    assert stats.pids == 1
    assert stats.name == "trusting_cori"
    assert stats.id == "8aa52404"


def test_cgroup_v2_sample() -> None:
    stats = compute(V2)
    # (0.5e6 / 2e6) * 4 CPUs * 100
    assert stats.cpu_percent == 100.0
    assert stats.memory_usage == 6_000_000  # minus inactive_file
    assert stats.memory_percent == 6.0
    assert (stats.block_read, stats.block_write) == (1000, 2000)
    assert stats.pids == 7


def test_v1_prefers_total_inactive_file() -> None:
    sample = {
        "memory_stats": {"usage": 100, "stats": {"total_inactive_file": 30, "inactive_file": 5}}
    }
    assert memory_usage(sample) == (70, 0)


def test_inactive_larger_than_usage_is_ignored() -> None:
    sample = {"memory_stats": {"usage": 100, "limit": 0, "stats": {"inactive_file": 500}}}
    assert memory_usage(sample) == (100, 0)
    assert compute(sample).memory_percent == 0.0  # no limit reported


@pytest.mark.parametrize(
    ("cpu", "pre", "expected"),
    [
        ({}, {}, 0.0),  # the first sample of a stream has no previous reading
        (
            {"cpu_usage": {"total_usage": 10}, "system_cpu_usage": 100},
            {"cpu_usage": {"total_usage": 10}, "system_cpu_usage": 50},
            0.0,
        ),
        (
            {"cpu_usage": {"total_usage": 20}, "system_cpu_usage": 100},
            {"cpu_usage": {"total_usage": 10}, "system_cpu_usage": 100},
            0.0,
        ),
    ],
)
def test_cpu_without_deltas(cpu: dict[str, Any], pre: dict[str, Any], expected: float) -> None:
    assert cpu_percent({"cpu_stats": cpu, "precpu_stats": pre})[0] == expected


def test_online_cpus_falls_back_to_percpu_then_one() -> None:
    sample: dict[str, Any] = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 20, "percpu_usage": [1, 1, 1]},
            "system_cpu_usage": 200,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 10}, "system_cpu_usage": 100},
    }
    assert cpu_percent(sample)[0] == pytest.approx(30.0)
    assert cpu_percent(sample)[1] == 3
    del sample["cpu_stats"]["cpu_usage"]["percpu_usage"]
    assert cpu_percent(sample)[0] == pytest.approx(10.0)
    assert cpu_percent(sample)[1] == 1


def test_empty_sample() -> None:
    stats = compute({}, container_id="abc", name="/x")
    assert stats.id == "abc"
    assert stats.name == "x"
    assert stats.cpu_percent == 0.0
    assert block_io({"blkio_stats": {"io_service_bytes_recursive": None}}) == (0, 0)


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 3 minutes (healthy)", "healthy"),
        ("Up 2 hours (unhealthy)", "unhealthy"),
        ("Up 1 second (health: starting)", "starting"),
        ("Up 5 seconds", None),
        ("Exited (0) 2 minutes ago", None),
    ],
)
def test_health_from_status(status: str, health: str | None) -> None:
    summary = ContainerSummary.from_engine({"Id": "x", "Names": ["/n"], "Status": status})
    assert summary.health == health
    assert summary.name == "n"
