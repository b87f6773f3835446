"""The accelerator fallback line the CLI shows after a boot."""

from __future__ import annotations

from cargobay.cli.output import accel_notice
from cargobay.hypervisors.accel import TCG_NOTICE


def test_notice_from_the_handle() -> None:
    machine = {"runtime": {"accel": "tcg", "handle": {"extra": {"accel_notice": TCG_NOTICE}}}}
    assert accel_notice(machine) == TCG_NOTICE


def test_no_notice_when_kvm_or_not_running() -> None:
    assert accel_notice({"runtime": {"accel": "kvm", "handle": {"extra": {}}}}) is None
    assert accel_notice({"runtime": {"handle": None}}) is None
    assert accel_notice({}) is None
