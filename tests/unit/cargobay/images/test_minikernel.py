"""The minimal kernel's config fragment, its checks and its cache key; recipes that use it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from cargobay.images import minikernel
from cargobay.images.build import DEFAULT_RECIPE, guest_files, initramfs_init, recipe_hash
from cargobay.images.kernel import KernelPackage
from cargobay.images.minikernel import (
    CONFIG_FRAGMENT,
    KERNEL_TOOLCHAIN,
    MinimalSource,
    dropped_options,
    kernel_key,
    kernel_release,
    missing_toolchain,
    parse_config,
)
from cargobay.images.recipes import recipe_for

SOURCE = MinimalSource("6.1.192-2", Path("/usr/src/linux-source-6.1.tar.xz"))

NEEDED = {
    # what issue 9 lists for a CargoBay guest, all built in (=y)
    "64-bit and SMP": ("CONFIG_64BIT", "CONFIG_SMP"),
    "serial console": ("CONFIG_SERIAL_8250", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_PRINTK"),
    "virtio transports": ("CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_PCI"),
    "virtio devices": ("CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_NET"),
    "vsock": ("CONFIG_VSOCKETS", "CONFIG_VIRTIO_VSOCKETS"),
    "file systems": (
        "CONFIG_EXT4_FS",
        "CONFIG_9P_FS",
        "CONFIG_NET_9P_VIRTIO",
        "CONFIG_OVERLAY_FS",
        "CONFIG_DEVTMPFS",
        "CONFIG_PROC_FS",
        "CONFIG_SYSFS",
        "CONFIG_TMPFS",
    ),
    "syscalls": (
        "CONFIG_EPOLL",
        "CONFIG_EVENTFD",
        "CONFIG_FUTEX",
        "CONFIG_SIGNALFD",
        "CONFIG_TIMERFD",
        "CONFIG_INOTIFY_USER",
        "CONFIG_UNIX98_PTYS",
    ),
    "containers": ("CONFIG_CGROUPS", "CONFIG_MEMCG", "CONFIG_NAMESPACES", "CONFIG_PID_NS"),
}


def fragment() -> dict[str, str]:
    return parse_config(CONFIG_FRAGMENT.read_text())


@pytest.mark.parametrize("group", sorted(NEEDED))
def test_the_fragment_builds_in_what_a_guest_needs(group: str) -> None:
    options = fragment()
    assert {name: options.get(name) for name in NEEDED[group]} == dict.fromkeys(NEEDED[group], "y")


def test_the_fragment_has_no_modules_and_says_why_for_every_group() -> None:
    options = fragment()
    assert options.get("CONFIG_MODULES") == "n"
    assert not [name for name, value in options.items() if value == "m"]
    # Every option sits under a comment: a group header or a line of its own.
    text = CONFIG_FRAGMENT.read_text().splitlines()
    for number, line in enumerate(text):
        if line.startswith("CONFIG_"):
            above = next(t for t in reversed(text[:number]) if not t.startswith("CONFIG_"))
            assert above.startswith("#"), f"line {number + 1}: {line} has no reason above it"


def test_parse_config_reads_set_unset_and_string_values() -> None:
    text = (
        "# comment\n"
        "CONFIG_A=y\n"
        "# CONFIG_B is not set\n"
        'CONFIG_LOCALVERSION="-x"\n'
        "CONFIG_NR_CPUS=64\n"
        "  \n"
        "CONFIG_lower=y\n"
    )
    assert parse_config(text) == {
        "CONFIG_A": "y",
        "CONFIG_B": "n",
        "CONFIG_LOCALVERSION": '"-x"',
        "CONFIG_NR_CPUS": "64",
        "CONFIG_lower": "y",
    }


def test_dropped_options_names_each_difference() -> None:
    wanted = {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "y", "CONFIG_D": "n"}
    final = {"CONFIG_A": "y", "CONFIG_B": "y"}  # C missing (dropped), D missing (= n)
    assert dropped_options(wanted, final) == ["CONFIG_B=n (got y)", "CONFIG_C=y (got n)"]
    assert dropped_options(wanted, {**final, "CONFIG_B": "n", "CONFIG_C": "y"}) == []


def test_the_cache_key_follows_the_fragment_and_the_source() -> None:
    text = CONFIG_FRAGMENT.read_bytes()
    key = kernel_key(text, SOURCE.version)
    assert key == kernel_key(text, SOURCE.version)
    assert key != kernel_key(text + b"CONFIG_X=y\n", SOURCE.version)
    assert key != kernel_key(text, "6.1.193-1")


def test_release_and_upstream_version() -> None:
    assert SOURCE.upstream == "6.1.192"
    assert MinimalSource("1:6.1.5-3~bpo", SOURCE.tarball).upstream == "6.1.5"
    assert kernel_release(SOURCE) == "6.1.192-cargobay-minimal"
    assert fragment()["CONFIG_LOCALVERSION"] == '"-cargobay-minimal"'


def test_a_missing_toolchain_names_the_packages(tmp_path: Path) -> None:
    # An empty PATH finds none of the tools: every package is named once.
    missing = missing_toolchain(search_path=str(tmp_path))
    assert set(KERNEL_TOOLCHAIN.values()) <= set(missing)


def test_the_minimal_recipe_hashes_the_fragment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files, init = guest_files(), initramfs_init()
    package = KernelPackage("linux-source-6.1", "6.1.192-2", "6.1.192-cargobay-minimal")
    minimal, debian = recipe_for("default"), recipe_for("debian")
    assert (minimal, minimal.kernel, debian.kernel) == (DEFAULT_RECIPE, "minimal", "debian")
    assert dataclasses.replace(debian, kernel="minimal") == minimal  # the same rootfs
    before = recipe_hash(minimal, package, files, init)
    debian_before = recipe_hash(debian, package, files, init)
    assert before != debian_before
    changed = tmp_path / "minimal.config"
    changed.write_bytes(CONFIG_FRAGMENT.read_bytes() + b"CONFIG_X=y\n")
    monkeypatch.setattr("cargobay.images.build.CONFIG_FRAGMENT", changed)
    assert recipe_hash(minimal, package, files, init) != before
    # Debian's kernel does not depend on the fragment.
    assert recipe_hash(debian, package, files, init) == debian_before


def test_recipe_for_overrides_the_kernel() -> None:
    assert recipe_for("default").kernel == "minimal"
    assert recipe_for("debian").kernel == "debian"
    assert recipe_for("docker").kernel == "debian"  # dockerd loads Debian's modules
    assert recipe_for("default", "debian").kernel == "debian"
    assert recipe_for("anything").kernel == "minimal"


def test_compile_lines_count_as_progress() -> None:
    lines = ["  CC      kernel/fork.o", "  LD      vmlinux", "make[1]: Entering", "  AR  x.a"]
    assert [bool(minikernel._UNIT.match(line)) for line in lines] == [True, True, False, True]
    assert re.match(r"^\d+\.\d+\.\d+-cargobay-minimal$", kernel_release(SOURCE))
