"""Resolving guest paths inside a root tree, and sizing the tree for mke2fs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cargobay.errors import ImageError
from cargobay.images.rootfs import guest_path, tree_usage


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "lib").mkdir()
    (root / "etc").mkdir()
    os.symlink("usr/sbin", root / "sbin")  # merged /usr, relative
    os.symlink("/usr/lib", root / "lib")  # absolute: must stay inside the tree
    os.symlink("../../etc", root / "usr" / "lib" / "etc-up")
    os.symlink("/", root / "usr" / "lib" / "top")
    return root


def test_relative_symlinks_are_followed(tree: Path) -> None:
    assert guest_path(tree, "/sbin/cargobay-init") == tree / "usr/sbin/cargobay-init"


def test_absolute_symlinks_restart_at_the_tree_root(tree: Path) -> None:
    assert guest_path(tree, "/lib/modules") == tree / "usr/lib/modules"
    assert guest_path(tree, "/usr/lib/top/etc/hostname") == tree / "etc/hostname"


def test_dotdot_never_leaves_the_tree(tree: Path) -> None:
    assert guest_path(tree, "/../../etc/hosts") == tree / "etc/hosts"
    assert guest_path(tree, "/lib/etc-up/fstab") == tree / "etc/fstab"
    assert guest_path(tree, "etc/./hosts") == tree / "etc/hosts"


def test_symlink_loops_are_an_error(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(ImageError, match="too many symbolic links"):
        guest_path(tmp_path, "/a/x")


def test_tree_usage_counts_blocks_and_inodes(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "small").write_bytes(b"x")
    (tmp_path / "big").write_bytes(b"y" * 5000)
    (tmp_path / "empty").write_bytes(b"")
    os.symlink("short", tmp_path / "fast-link")
    os.symlink("x" * 80, tmp_path / "slow-link")
    size, inodes = tree_usage(tmp_path)
    directory_block = 4096 * ((os.lstat(tmp_path / "d").st_size + 4095) // 4096)
    # small: 1 block, big: 2 blocks, empty: 0, fast link: 0, slow link: 1, d itself
    assert size == 4096 * 4 + directory_block
    assert inodes == 6 + 1
