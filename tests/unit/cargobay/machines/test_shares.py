"""Share parsing and checks, the guest mount commands, cache_strategy as a setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.errors import ConfigError, InvalidInput
from cargobay.machines.settings import machine_settings, plan_changes
from cargobay.machines.shares import (
    ShareSpec,
    mount_argv,
    parse_share,
    share_devices,
    with_storage,
)
from cargobay.machines.validation import new_instance


def test_parse_share(tmp_path: Path) -> None:
    s = parse_share(f"{tmp_path}:/mnt/src")
    assert s == ShareSpec(host_path=str(tmp_path.resolve()), guest_path="/mnt/src")
    assert parse_share(f"{tmp_path}:/mnt/src:ro").readonly


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{tmp}", "HOST_PATH:GUEST_PATH"),
        ("{tmp}/missing:/mnt", "does not exist"),
        ("{tmp}/file:/mnt", "not a directory"),
        ("{tmp}:mnt", "absolute"),
        ("{tmp}:/mnt/../etc", "'..'"),
        ("{tmp}:/mnt:rx", "HOST_PATH:GUEST_PATH"),
    ],
)
def test_bad_shares_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match=message):
        parse_share(text.format(tmp=tmp_path))


def test_devices_and_mount_commands(tmp_path: Path) -> None:
    shares = (
        ShareSpec(host_path="/a", guest_path="/mnt/a", readonly=True),
        ShareSpec(host_path="/b", guest_path="/mnt/b", kind="virtiofs"),
    )
    devices, extra = share_devices(shares, tmp_path)
    assert [d.tag for d in devices] == ["cbshare0", "cbshare1"]
    assert devices[1].socket == str(tmp_path / "vfs1.sock")
    # virtiofs needs the guest RAM shared: a shared memory file in the run directory
    assert extra["memory_file"] == "/dev/shm"  # a directory: QEMU unlinks its file
    assert extra["memory_share"] == "on"
    assert mount_argv(devices[0], "/mnt/a") == [
        "mount", "-t", "9p", "-o", "trans=virtio,version=9p2000.L,msize=262144,ro",
        "cbshare0", "/mnt/a",
    ]  # fmt: skip
    assert mount_argv(devices[1], "/mnt/b") == ["mount", "-t", "virtiofs", "cbshare1", "/mnt/b"]
    _, only_9p = share_devices(shares[:1], tmp_path)
    assert "memory_file" not in only_9p


def test_with_storage_and_cache_setting(tmp_path: Path) -> None:
    vm = with_storage(new_instance("box"), [f"{tmp_path}:/mnt/x:ro"], "unsafe")
    assert vm.config.cache_strategy == "unsafe"
    assert vm.config.shares[0].readonly
    assert machine_settings(vm)["shares"] == [f"{tmp_path.resolve()}:/mnt/x:ro"]
    with pytest.raises(InvalidInput, match="same guest path"):
        with_storage(new_instance("box"), [f"{tmp_path}:/m", f"{tmp_path}:/m/"], "writeback")
    with pytest.raises(InvalidInput, match="cache strategy"):
        with_storage(new_instance("box"), [], "fast")
    plan = plan_changes(vm, {"cache_strategy": "none"}, ())
    assert plan.config.cache_strategy == "none"
    assert plan.changed == ("cache_strategy",)
    with pytest.raises(ConfigError, match="cache_strategy"):
        plan_changes(vm, {"cache_strategy": "fast"}, ())
    with pytest.raises(ConfigError, match="shares"):
        plan_changes(vm, {"shares": "x"}, ())
