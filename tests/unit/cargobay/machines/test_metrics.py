"""The metrics arithmetic and parsing: /proc/PID/stat, status, uptime, the guest's
meminfo and /proc/stat, CPU % between readings, QMP query-blockstats rows.  Texts are as
Linux writes them (captured from a 6.1 kernel; the command name holds spaces and a
parenthesis on purpose)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.hypervisors.qemu import parse_blockstats
from cargobay.machines.metrics import (
    CLK_TCK,
    CpuMeter,
    ProcSample,
    cpu_percent,
    parse_meminfo,
    parse_proc_pid_stat,
    parse_proc_stat_cpu,
    parse_status_rss,
    parse_uptime,
    sample,
)

PID_STAT = (
    "4242 (qemu (x) sys) S 1 4241 4241 0 -1 4194624 12345 0 0 0 "
    "1500 250 0 0 20 0 5 0 987654 2147483648 30000 18446744073709551615 "
    "1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n"
)

MEMINFO = """MemTotal:         500000 kB
MemFree:          300000 kB
MemAvailable:     400000 kB
Buffers:           10240 kB
Cached:            40960 kB
SwapCached:            0 kB
SReclaimable:       5120 kB
HugePages_Total:       0
"""

PROC_STAT = """cpu  100 5 50 800 20 3 2 0 0 0
cpu0 50 2 25 400 10 1 1 0 0 0
cpu1 50 3 25 400 10 2 1 0 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
"""


def test_pid_stat_fields_after_a_name_with_spaces_and_parentheses() -> None:
    assert parse_proc_pid_stat(PID_STAT) == (1500 + 250, 987654)


def test_status_rss_in_bytes_and_zero_without_the_line() -> None:
    assert parse_status_rss("Name:\tqemu\nVmRSS:\t   123456 kB\nThreads: 5\n") == 123456 * 1024
    assert parse_status_rss("Name:\tzombie\nState:\tZ (zombie)\n") == 0


def test_uptime() -> None:
    assert parse_uptime("12345.67 23456.78\n") == pytest.approx(12345.67)


def test_meminfo_in_mib() -> None:
    m = parse_meminfo(MEMINFO)
    assert (m.total_mb, m.available_mb, m.used_mb) == (488, 390, 97)
    assert m.cache_mb == (10240 + 40960 + 5120) // 1024


def test_meminfo_without_memavailable_is_an_error() -> None:
    with pytest.raises(ValueError, match="MemAvailable"):
        parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\n")


def test_proc_stat_busy_and_total() -> None:
    # user nice system idle iowait irq softirq steal = 100 5 50 800 20 3 2 0
    assert parse_proc_stat_cpu(PROC_STAT) == (100 + 5 + 50 + 3 + 2, 980)
    with pytest.raises(ValueError, match="no cpu line"):
        parse_proc_stat_cpu("intr 1\n")


def test_cpu_percent_between_readings() -> None:
    assert cpu_percent((160, 980), (185, 1080)) == 25.0
    assert cpu_percent((160, 980), (160, 980)) is None  # no time passed
    assert cpu_percent((160, 980), (10, 100)) is None  # counters went back: a reboot


def test_host_cpu_meter() -> None:
    meter = CpuMeter(min_interval=0.5)
    first = ProcSample(pid=7, cpu_seconds=10.0, rss_bytes=1, uptime_seconds=5, at=100.0)
    assert meter.percent(first) is None
    # 0.5 s of CPU in 2 s of wall time: 25 % of one CPU
    later = ProcSample(pid=7, cpu_seconds=10.5, rss_bytes=1, uptime_seconds=7, at=102.0)
    assert meter.percent(later) == 25.0
    # a reading too soon after returns the last figure
    soon = ProcSample(pid=7, cpu_seconds=11.5, rss_bytes=1, uptime_seconds=7, at=102.1)
    assert meter.percent(soon) == 25.0


def test_sample_of_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(PID_STAT)
    (tmp_path / "4242" / "status").write_text("VmRSS:\t2048 kB\n")
    (tmp_path / "uptime").write_text(f"{987654 / CLK_TCK + 42.5:.2f} 1.00\n")
    s = sample(4242, proc=tmp_path)
    assert s is not None
    assert s.cpu_seconds == pytest.approx(1750 / CLK_TCK)
    assert s.rss_bytes == 2048 * 1024
    assert s.uptime_seconds == pytest.approx(42.5, abs=0.02)
    assert sample(4243, proc=tmp_path) is None


def test_sample_of_this_process_is_real() -> None:
    import os

    s = sample(os.getpid())
    assert s is not None
    assert s.rss_bytes > 0
    assert s.uptime_seconds >= 0


def test_blockstats_rows() -> None:
    answer = [
        {
            "device": "root",
            "qdev": "/machine/x",
            "stats": {"rd_bytes": 4096, "wr_bytes": 0, "rd_operations": 2, "wr_operations": 0},
        },
        {
            "device": "",
            "qdev": "/machine/peripheral-anon/device[1]/virtio-backend",
            "stats": {"rd_bytes": 1, "wr_bytes": 512, "rd_operations": 1, "wr_operations": 1},
        },
    ]
    assert parse_blockstats(answer) == [
        {"drive": "root", "read_bytes": 4096, "write_bytes": 0, "read_ops": 2, "write_ops": 0},
        {
            "drive": "/machine/peripheral-anon/device[1]/virtio-backend",
            "read_bytes": 1,
            "write_bytes": 512,
            "read_ops": 1,
            "write_ops": 1,
        },
    ]
    assert parse_blockstats({"not": "a list"}) == []
