"""Block images and scratch volumes: sizes, the guest mount command, the config rules and
the virtio-blk arguments (the mkfs and the guest side: tests/integration/daemon/
test_storage_data.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.errors import Conflict, InvalidInput
from cargobay.hypervisors.qemu_cmdline import QemuOptions, build_argv
from cargobay.hypervisors.qemu_storage import ShareDevice
from cargobay.machines.attachments import (
    Attachment,
    add_attachment,
    image_size_mb,
    mount_script,
    remove_attachment,
)
from cargobay.machines.shares import with_storage
from cargobay.machines.validation import new_instance
from tests.unit.cargobay.hypervisors.test_qemu_cmdline import make_spec


def test_image_size_has_room(tmp_path: Path) -> None:
    assert image_size_mb(tmp_path) == 8  # the minimum
    (tmp_path / "big").write_bytes(b"\0" * (20 * 1024 * 1024))
    assert 25 <= image_size_mb(tmp_path) <= 32


def test_mount_script_finds_the_disk_by_serial() -> None:
    img = mount_script(0, Attachment(kind="image", guest_path="/mnt/a b", image_path="/x"))
    assert img[:2] == ["sh", "-c"]
    assert img[-1] == "/mnt/a b"  # passed as $1, never spliced into the script
    assert "cbatt0" in img[2]
    assert "-o ro " in img[2]
    vol = mount_script(3, Attachment(kind="volume", guest_path="/scratch", size_mb=64))
    assert "cbatt3" in vol[2]
    assert "-o ro" not in vol[2]


def test_attachment_rules(tmp_path: Path) -> None:
    vm = with_storage(new_instance("box"), [f"{tmp_path}:/mnt/share"], "writeback")
    vm = add_attachment(vm, Attachment(kind="volume", guest_path="/scratch", size_mb=8))
    with pytest.raises(Conflict, match="already has"):
        add_attachment(vm, Attachment(kind="volume", guest_path="/scratch/", size_mb=8))
    with pytest.raises(Conflict, match="already has"):
        add_attachment(vm, Attachment(kind="volume", guest_path="/mnt/share", size_mb=8))
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        add_attachment(vm, Attachment(kind="volume", guest_path="/a/../b", size_mb=8))
    vm, gone = remove_attachment(vm, "/scratch")
    assert gone.kind == "volume"
    assert vm.config.attachments == ()
    with pytest.raises(InvalidInput, match="no image or volume"):
        remove_attachment(vm, "/scratch")


def test_block_devices_on_the_argv() -> None:
    blocks = (
        ShareDevice(tag="cbatt0", host_path="/m/img.ext4", readonly=True, kind="block"),
        ShareDevice(tag="cbatt1", host_path="/m/volume1.ext4", kind="block"),
    )
    argv = build_argv("qemu", make_spec(), QemuOptions(shares=blocks))
    assert "id=blk0,file=/m/img.ext4,format=raw,if=none,readonly=on" in argv
    assert "id=blk1,file=/m/volume1.ext4,format=raw,if=none,discard=unmap" in argv
    assert "virtio-blk-device,drive=blk1,serial=cbatt1" in argv
