"""``vm status NAME`` rows for a machine's metrics."""

from __future__ import annotations

from cargobay.cli.metrics_view import metrics_pairs


def test_no_rows_without_a_process() -> None:
    assert metrics_pairs({"pid": None, "memory_limit_bytes": 1}) == []


def test_rows_for_a_running_machine() -> None:
    rows = dict(
        metrics_pairs(
            {
                "pid": 10,
                "cpu_percent": 12.5,
                "cpu_seconds": 3.0,
                "rss_bytes": 100 * 1024 * 1024,
                "memory_limit_bytes": 512 * 1024 * 1024,
                "uptime_seconds": 3725.2,
                "disks": [
                    {
                        "drive": "root",
                        "read_bytes": 2 * 1024 * 1024,
                        "write_bytes": 0,
                        "read_ops": 40,
                        "write_ops": 0,
                    }
                ],
                "network": {"rx_bytes": None, "tx_bytes": None, "note": "not measured: why"},
                "guest": {
                    "memory": {"total_mb": 480, "used_mb": 60, "available_mb": 420, "cache_mb": 30},
                    "cpu_percent": None,
                    "uptime_seconds": 61,
                },
            }
        )
    )
    assert rows["host cpu"].startswith("12.5 %")
    assert rows["host rss"] == "100.0 MiB of 512.0 MiB"
    assert rows["uptime"] == "1h02m05s"
    assert rows["disk root"] == "read 2.0 MiB (40 ops), written 0.0 MiB (0 ops)"
    assert rows["network"] == "not measured: why"
    assert rows["guest cpu"] == "-"
    assert rows["guest memory"] == "60 MiB used, 420 available, 30 cache, 480 total"
    assert rows["guest uptime"] == "0h01m01s"
