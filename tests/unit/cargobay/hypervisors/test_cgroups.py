"""VM cgroup limits and the reasons for running without them (``hypervisors.cgroups``);
placing a real process is tested with real QEMU in tests/integration/machines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cargobay.hypervisors.cgroups import Placement, limits_for, place


def test_limits_follow_the_vm_shape() -> None:
    small = limits_for(1, 256)
    big = limits_for(4, 4096)
    assert (small.cpu_quota_us, small.period_us) == (100_000, 100_000)
    assert big.cpu_quota_us == 400_000
    assert small.memory_bytes == (256 + 384 + 32) * 1024 * 1024
    assert big.memory_bytes > 4096 * 1024 * 1024


def test_switched_off_or_nothing_to_use(tmp_path: Path) -> None:
    off = place("abc", os.getpid(), limits_for(1, 256), env={"CARGOBAY_CGROUPS": "off"})
    assert off.version == 0
    assert "CARGOBAY_CGROUPS=off" in off.as_extra()["cgroup_note"]
    if os.geteuid() != 0:
        pytest.skip("the next case needs root (as a non-root daemon says no earlier)")
    empty = place("abc", os.getpid(), limits_for(1, 256), root=tmp_path, env={})
    assert empty.version == 0
    assert str(tmp_path) in empty.reason


def test_placement_record() -> None:
    assert Placement(2, ("/sys/fs/cgroup/cargobay/x",)).as_extra() == {
        "cgroup_version": "2",
        "cgroups": "/sys/fs/cgroup/cargobay/x",
    }
