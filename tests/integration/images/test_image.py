"""The built default image, inspected from the host without booting or mounting it:
manifest and checksums, the ext4 root (debugfs), the initramfs (our reader and cpio -t),
and a second build that finds nothing to do."""

from __future__ import annotations

import gzip
import re
import subprocess
import time
from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.images import BUILD_STEPS, BuildEvent, ImageManifest, ImageStore, build_image
from cargobay.images.cpio import read_newc
from cargobay.images.initramfs import MODULE_LIST
from cargobay.images.tools import find_tool
from cargobay.paths import Paths
from tests.support import require, require_binary

Image = tuple[Path, ImageManifest]


def debugfs(image: Path, request: str) -> str:
    tool = find_tool("debugfs")
    require(tool is not None, "debugfs (Debian: e2fsprogs)")
    assert tool is not None
    done = subprocess.run(
        [tool, "-R", request, str(image)], capture_output=True, text=True, check=True
    )
    return done.stdout


def ls(image: Path, directory: str) -> set[str]:
    """Names in a directory of the image (``ls -p``: /inode/mode/uid/gid/name/size/)."""
    names = set()
    for line in debugfs(image, f"ls -p {directory}").splitlines():
        fields = line.split("/")
        if len(fields) >= 7 and fields[5] not in (".", ".."):
            names.add(fields[5])
    return names


def test_the_default_manifest_matches_the_files(default_image: Image) -> None:
    directory, manifest = default_image
    assert ImageStore(directory.parent).verify(manifest.name) == []
    assert manifest.kernel_kind == "minimal"
    assert manifest.kernel_package.startswith("linux-source-6.1 ")
    assert manifest.initramfs_modules == []
    assert sorted(p.name for p in directory.iterdir()) == [
        "initrd.img",
        "manifest.json",
        "rootfs.ext4",
        "vmlinux",
    ]
    # the ELF with its PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU starts
    kernel = (directory / "vmlinux").read_bytes()
    assert kernel[:4] == b"\x7fELF"
    assert b"Xen\x00" in kernel
    # no modules in the root image: the kernel has none
    assert ls(directory / "rootfs.ext4", "/usr/lib/modules") == set()


def test_the_debian_manifest_matches_the_files(debian_image: Image) -> None:
    directory, manifest = debian_image
    store = ImageStore(directory.parent)
    assert store.verify(manifest.name) == []
    assert manifest.kernel_version.endswith("-cloud-amd64")
    assert manifest.kernel_package.startswith(f"linux-image-{manifest.kernel_version} ")
    assert manifest.python_version.startswith("3.11.")
    assert manifest.initrd is not None
    assert manifest.initramfs_modules[:2] == ["virtio_ring", "virtio"]
    assert {"virtio_mmio", "virtio_blk", "virtio_console", "overlay"} <= set(
        manifest.initramfs_modules
    )
    assert re.fullmatch(r"[0-9a-f]{64}", manifest.recipe_hash)
    assert directory.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in directory.iterdir()) == [
        "initrd.img",
        "manifest.json",
        "rootfs.ext4",
        "vmlinuz",
    ]


def test_rootfs_is_a_journal_less_ext4_labelled_cbroot(default_image: Image) -> None:
    directory, _ = default_image
    header = debugfs(directory / "rootfs.ext4", "stats -h")
    assert re.search(r"Filesystem volume name:\s+cbroot$", header, re.M)
    features = re.search(r"Filesystem features:\s+(.*)$", header, re.M)
    assert features is not None
    assert "has_journal" not in features.group(1)
    free = int(re.search(r"Free blocks:\s+(\d+)", header).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"Block count:\s+(\d+)", header).group(1))  # type: ignore[union-attr]
    assert 0 < free < total // 2, "sized to the content plus a margin"


def test_rootfs_holds_init_agent_and_compiled_bytecode(debian_image: Image) -> None:
    rootfs = debian_image[0] / "rootfs.ext4"
    init = debugfs(rootfs, "stat /usr/sbin/cargobay-init")
    assert re.search(r"Mode:\s+0755", init)
    assert re.search(r"User:\s+0\s+Group:\s+0", init)
    assert ls(rootfs, "/opt/cargobay/lib") == {"virga", "cargobay"}
    assert {"__init__.py", "protocol.py"} <= ls(rootfs, "/opt/cargobay/lib/cargobay/guest")
    assert "session.cpython-311.pyc" in ls(rootfs, "/opt/cargobay/lib/virga/yamux/__pycache__")
    assert "python3" in ls(rootfs, "/usr/bin")
    assert "qemu-ga" in ls(rootfs, "/usr/sbin")
    # modules for the guest's own modprobe, compressed, with a modules.dep that says so
    modules_dir = f"/usr/lib/modules/{debian_image[1].kernel_version}"
    modules_dep = debugfs(rootfs, f"cat {modules_dir}/modules.dep")
    assert "kernel/drivers/net/virtio_net.ko.zst:" in modules_dep
    # slimmed: no apt lists, no documentation
    assert ls(rootfs, "/usr/share/doc") == set()
    assert ls(rootfs, "/var/lib/apt/lists") <= {"partial", "lock"}
    assert "fstab" in ls(rootfs, "/etc")
    assert debugfs(rootfs, "cat /etc/hostname") == "cargobay\n"


def test_initramfs_contents(debian_image: Image) -> None:
    directory, manifest = debian_image
    raw = gzip.decompress((directory / "initrd.img").read_bytes())
    entries = {e.name: e for e in read_newc(raw)}
    order = entries[MODULE_LIST].data.decode().split()
    assert order == manifest.initramfs_modules
    for module in order:
        assert entries[f"lib/modules/{module}.ko"].data[:4] == b"\x7fELF"
    assert entries["bin/busybox"].data[:4] == b"\x7fELF"
    assert entries["bin/switch_root"].target == "busybox"
    assert entries["init"].data.startswith(b"#!/bin/busybox sh\n")
    cpio = require_binary("cpio", "Debian: apt-get install cpio")
    listed = subprocess.run([cpio, "-t", "--quiet"], input=raw, capture_output=True, check=True)
    assert set(listed.stdout.decode().split()) == set(entries)


def test_second_build_finds_nothing_to_do(default_image: Image, image_build_paths: Paths) -> None:
    _, manifest = default_image
    events: list[BuildEvent] = []
    started = time.monotonic()
    again = build_image(image_build_paths, "default", progress=events.append)
    elapsed = time.monotonic() - started
    assert again == manifest
    assert events[-1].step == "finish"
    assert events[-1].message == "image default is up to date"
    assert {e.step for e in events} <= {"prepare", "finish"}
    assert all(e.step in BUILD_STEPS for e in events)
    print(f"up-to-date check took {elapsed:.2f} s")


@pytest.mark.parametrize("name", ["Bad Name", "../x"])
def test_bad_image_names_fail_before_doing_anything(name: str, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "d", tmp_path / "s", tmp_path / "c", tmp_path / "r")
    with pytest.raises(InvalidInput):
        build_image(paths, name)
    assert list(tmp_path.iterdir()) == []
