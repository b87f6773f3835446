"""Finding the kernel package in apt's output, and the initramfs module load order."""

from __future__ import annotations

import pytest

from cargobay.errors import ImageError
from cargobay.images.kernel import KernelPackage, load_order, parse_apt_show, parse_modules_dep

APT_SHOW = """\
Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Installed-Size: 13
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Provides: wireguard-modules (= 1.0.0)
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Description-en: Linux for x86-64 cloud (meta-package)
"""

MODULES_DEP = """\
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.zst: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
"""  # noqa: E501


def test_apt_show_names_the_abi_package() -> None:
    assert parse_apt_show(APT_SHOW, "cloud-amd64") == KernelPackage(
        name="linux-image-6.1.0-56-cloud-amd64",
        version="6.1.192-2",
        release="6.1.0-56-cloud-amd64",
    )


def test_apt_show_with_alternatives_and_other_flavours() -> None:
    text = (
        "Package: linux-image-amd64\nVersion: 6.1.192-2\n"
        "Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2) | "
        "linux-image-6.1.0-56-amd64 (= 6.1.192-2), initramfs-tools\n"
    )
    assert parse_apt_show(text, "amd64") == KernelPackage(
        "linux-image-6.1.0-56-amd64", "6.1.192-2", "6.1.0-56-amd64"
    )


def test_apt_show_without_a_kernel_dependency() -> None:
    assert parse_apt_show("Package: foo\nDepends: libc6 (>= 2.36)\n", "cloud-amd64") is None
    assert parse_apt_show("", "cloud-amd64") is None


def test_modules_dep_names_use_underscores_and_drop_suffixes() -> None:
    table = parse_modules_dep(MODULES_DEP)
    assert table["virtio_rng"] == (
        "kernel/drivers/char/hw_random/virtio-rng.ko.zst",
        ["virtio", "virtio_ring"],
    )
    assert table["overlay"] == ("kernel/fs/overlayfs/overlay.ko", [])


def test_load_order_puts_dependencies_first_and_keeps_the_asked_order() -> None:
    table = parse_modules_dep(MODULES_DEP)
    order = load_order(["virtio_blk", "virtio_pci", "overlay", "virtio_console"], table)
    names = [name for name, _ in order]
    assert names == [
        "virtio_ring",
        "virtio",
        "virtio_blk",
        "virtio_pci_legacy_dev",
        "virtio_pci_modern_dev",
        "virtio_pci",
        "overlay",
        "virtio_console",
    ]
    assert dict(order)["virtio_blk"] == "kernel/drivers/block/virtio_blk.ko"


def test_builtin_modules_are_skipped() -> None:
    table = parse_modules_dep(MODULES_DEP)
    order = load_order(["ext4", "overlay"], table, builtin=["kernel/fs/ext4/ext4.ko"])
    assert order == [("overlay", "kernel/fs/overlayfs/overlay.ko")]


def test_unknown_module_is_an_image_error_naming_who_needs_it() -> None:
    table = parse_modules_dep("kernel/a.ko: kernel/missing.ko\n")
    with pytest.raises(ImageError, match="no module missing \\(needed by a\\)"):
        load_order(["a"], table)
    with pytest.raises(ImageError, match="no module nine_p"):
        load_order(["nine-p"], table)


def test_dependency_cycle_is_reported() -> None:
    table = parse_modules_dep("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n")
    with pytest.raises(ImageError, match="cycle"):
        load_order(["a"], table)
