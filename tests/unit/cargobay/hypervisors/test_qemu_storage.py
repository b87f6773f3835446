"""The data drive's cache mapping and the share devices, on the built argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.hypervisors.qemu_cmdline import QemuOptions, build_argv
from cargobay.hypervisors.qemu_storage import (
    CACHE_OPTIONS,
    ShareDevice,
    data_drive_options,
    decode_shares,
    encode_shares,
)
from tests.unit.cargobay.hypervisors.test_qemu_cmdline import make_spec


def _data_drive(argv: list[str]) -> str:
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    (data,) = [d for d in drives if d.startswith("id=data,")]
    return data


@pytest.mark.parametrize(
    ("strategy", "cache", "aio"),
    [
        ("writeback", "writeback", "threads"),
        ("writethrough", "writethrough", "threads"),
        ("none", "none", "native"),
        ("directsync", "directsync", "native"),
        ("unsafe", "unsafe", "threads"),
    ],
)
def test_cache_strategy_reaches_the_data_drive(strategy: str, cache: str, aio: str) -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions(data_cache=strategy))
    opts = _data_drive(argv).split(",")
    assert f"cache={cache}" in opts
    assert f"aio={aio}" in opts
    assert "discard=unmap" in opts  # kept whatever the strategy
    root = next(argv[i + 1] for i, a in enumerate(argv) if a == "-drive")
    assert "cache=" not in root  # the read-only root drive keeps QEMU's default


def test_default_is_writeback_and_every_config_value_maps() -> None:
    assert "cache=writeback" in _data_drive(build_argv("qemu", make_spec(), QemuOptions()))
    from cargobay.config.settings import CacheStrategy

    assert set(CacheStrategy.__args__) == set(CACHE_OPTIONS)


def test_unknown_cache_strategy_is_refused() -> None:
    with pytest.raises(InvalidInput, match="cache strategy"):
        data_drive_options("fast")


def test_9p_share_argv_with_readonly() -> None:
    shares = (
        ShareDevice(tag="cbshare0", host_path="/srv/a,b"),
        ShareDevice(tag="cbshare1", host_path="/srv/ro", readonly=True),
    )
    argv = build_argv("qemu", make_spec(), QemuOptions(shares=shares))
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    assert fsdevs == [
        "local,id=fs0,path=/srv/a,,b,security_model=none",
        "local,id=fs1,path=/srv/ro,security_model=none,readonly=on",
    ]
    assert "virtio-9p-device,fsdev=fs1,mount_tag=cbshare1" in argv
    q35 = build_argv("qemu", make_spec(), QemuOptions(machine="q35", shares=shares))
    assert "virtio-9p-pci,fsdev=fs0,mount_tag=cbshare0" in q35


def test_virtiofs_share_needs_its_socket() -> None:
    dev = ShareDevice(tag="cbshare0", host_path="/srv", kind="virtiofs", socket="/run/x/vfs0.sock")
    argv = build_argv("qemu", make_spec(), QemuOptions(shares=(dev,)))
    assert "socket,id=vfs0,path=/run/x/vfs0.sock" in argv
    assert "vhost-user-fs-device,chardev=vfs0,tag=cbshare0" in argv
    # libvhost-user refuses legacy virtio-mmio devices (microvm's default)
    assert "virtio-mmio.force-legacy=false" in argv
    plain = build_argv("qemu", make_spec(), QemuOptions())
    assert "virtio-mmio.force-legacy=false" not in plain
    with pytest.raises(InvalidInput, match="virtiofsd socket"):
        build_argv(
            "qemu",
            make_spec(),
            QemuOptions(shares=(ShareDevice(tag="t", host_path="/s", kind="virtiofs"),)),
        )


def test_shares_round_trip_through_the_spec_text() -> None:
    shares = (
        ShareDevice(tag="cbshare0", host_path="/a", readonly=True),
        ShareDevice(tag="cbshare1", host_path="/b", kind="virtiofs", socket="/r/vfs1.sock"),
    )
    assert decode_shares(encode_shares(shares)) == shares
    assert decode_shares("") == ()
    with pytest.raises(InvalidInput):
        decode_shares('[{"nope": 1}]')


def test_too_long_tag_is_refused(tmp_path: Path) -> None:
    dev = ShareDevice(tag="x" * 40, host_path=str(tmp_path))
    with pytest.raises(InvalidInput, match="tag"):
        build_argv("qemu", make_spec(), QemuOptions(shares=(dev,)))
