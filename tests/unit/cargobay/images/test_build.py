"""What goes into an image and its recipe hash; the initramfs layout; tool checks."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from cargobay.errors import ImageError
from cargobay.guest import protocol
from cargobay.images.build import (
    BUILD_STEPS,
    DEFAULT_RECIPE,
    GUEST_DIR,
    agent_sources,
    guest_files,
    initramfs_init,
    recipe_hash,
)
from cargobay.images.cpio import read_newc
from cargobay.images.initramfs import MODULE_LIST, write_initramfs
from cargobay.images.kernel import KernelPackage
from cargobay.images.rootfs import GuestFile
from cargobay.images.tools import find_tool, require_tools

KERNEL = KernelPackage("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", "6.1.0-56-cloud-amd64")


def test_agent_sources_carry_virga_and_the_guest_package_only() -> None:
    sources = agent_sources()
    assert "virga/__init__.py" in sources
    assert "virga/yamux/session.py" in sources
    assert "cargobay/__init__.py" in sources
    assert "cargobay/guest/protocol.py" in sources
    assert not any("__pycache__" in path for path in sources)
    outside = [
        p
        for p in sources
        if p.startswith("cargobay/")
        and not p.startswith(("cargobay/guest/", "cargobay/__init__.py"))
    ]
    assert outside == []
    assert sources["cargobay/guest/protocol.py"] == Path(protocol.__file__).read_bytes()


def test_guest_files_install_init_and_agent() -> None:
    files = guest_files()
    init = files["/sbin/cargobay-init"]
    assert init.mode == 0o755
    assert init.data.startswith(b"#!/bin/sh\n")
    assert files["/etc/hostname"].data == b"cargobay\n"
    assert "/opt/cargobay/lib/virga/yamux/aio.py" in files
    assert "/opt/cargobay/selftest.py" in files


def test_init_scripts_use_the_protocol_port_names_and_agent_module() -> None:
    init = (GUEST_DIR / "cargobay-init").read_text()
    assert protocol.QGA_PORT_NAME == "org.qemu.guest_agent.0"
    assert f'"$pname" = {protocol.QGA_PORT_NAME} ]' in init
    assert "exec python3 -m cargobay.guest\n" in init
    assert "PYTHONPATH=/opt/cargobay/lib" in init
    initramfs = initramfs_init().decode()
    assert "findfs LABEL=cbroot" in initramfs
    assert "findfs LABEL=cbdata" in initramfs
    assert "init=/sbin/cargobay-init" in initramfs


def files_with(path: str, data: bytes, mode: int = 0o644) -> dict[str, GuestFile]:
    files = guest_files()
    files[path] = GuestFile(data, mode)
    return files


def test_recipe_hash_is_stable_and_sees_every_input() -> None:
    files = guest_files()
    init = initramfs_init()
    base = recipe_hash(DEFAULT_RECIPE, KERNEL, files, init)
    assert base == recipe_hash(DEFAULT_RECIPE, KERNEL, guest_files(), initramfs_init())
    other_kernel = dataclasses.replace(KERNEL, version="6.1.192-3")
    variants = [
        recipe_hash(DEFAULT_RECIPE, other_kernel, files, init),
        recipe_hash(DEFAULT_RECIPE, KERNEL, files, init + b"\n"),
        recipe_hash(
            DEFAULT_RECIPE, KERNEL, files_with("/sbin/cargobay-init", b"#!/bin/sh\n"), init
        ),
        recipe_hash(
            DEFAULT_RECIPE, KERNEL, files_with("/opt/cargobay/lib/virga/new.py", b""), init
        ),
        recipe_hash(
            DEFAULT_RECIPE,
            KERNEL,
            files_with("/sbin/cargobay-init", files["/sbin/cargobay-init"].data, 0o700),
            init,
        ),
        recipe_hash(
            dataclasses.replace(DEFAULT_RECIPE, packages=(*DEFAULT_RECIPE.packages, "strace")),
            KERNEL,
            files,
            init,
        ),
        recipe_hash(dataclasses.replace(DEFAULT_RECIPE, cmdline="quiet"), KERNEL, files, init),
        recipe_hash(
            dataclasses.replace(DEFAULT_RECIPE, initramfs_modules=("virtio_blk",)),
            KERNEL,
            files,
            init,
        ),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_default_recipe_has_what_the_contract_needs() -> None:
    assert {"python3", "qemu-guest-agent", "kmod", "busybox-static"} <= set(DEFAULT_RECIPE.packages)
    modules = DEFAULT_RECIPE.initramfs_modules
    assert modules.index("virtio_ring") < modules.index("virtio") < modules.index("virtio_mmio")
    assert {"virtio_blk", "virtio_console", "overlay"} <= set(modules)
    assert DEFAULT_RECIPE.cmdline == "console=ttyS0 reboot=t panic=-1 quiet"
    assert BUILD_STEPS[0] == "prepare"
    assert BUILD_STEPS[-1] == "finish"


def test_initramfs_layout() -> None:
    archive = write_initramfs(
        b"#!/bin/busybox sh\n",
        b"\x7fELF busybox",
        ["sh", "mount", "insmod"],
        [("virtio_ring", b"ring"), ("virtio", b"virtio")],
    )
    entries = {e.name: e for e in read_newc(archive)}
    assert entries["init"].data == b"#!/bin/busybox sh\n"
    assert stat.S_IMODE(entries["init"].mode) == 0o755
    assert entries["bin/busybox"].data == b"\x7fELF busybox"
    assert stat.S_IMODE(entries["bin/busybox"].mode) == 0o755
    for applet in ("sh", "mount", "insmod"):
        assert entries[f"bin/{applet}"].is_symlink
        assert entries[f"bin/{applet}"].target == "busybox"
    console = entries["dev/console"]
    assert console.is_chardev
    assert (console.rdevmajor, console.rdevminor) == (5, 1)
    assert entries["lib/modules/virtio.ko"].data == b"virtio"
    assert entries[MODULE_LIST].data == b"virtio_ring\nvirtio\n"
    for mount_point in ("proc", "sys", "newroot", "cb"):
        assert entries[mount_point].is_dir


def test_missing_tools_name_their_debian_packages(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        require_tools(["debootstrap", "mke2fs", "zstd"], search_path=str(tmp_path))
    message = str(caught.value)
    assert "debootstrap (Debian package debootstrap)" in message
    assert "mke2fs (Debian package e2fsprogs)" in message
    assert "sudo apt-get install debootstrap e2fsprogs zstd" in message


def test_tools_found_in_the_search_path(tmp_path: Path) -> None:
    tool = tmp_path / "debootstrap"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert require_tools(["debootstrap"], search_path=str(tmp_path)) == {"debootstrap": str(tool)}
    assert find_tool("debootstrap", search_path=str(tmp_path)) == str(tool)
