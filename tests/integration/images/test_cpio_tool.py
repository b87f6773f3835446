"""Our newc writer and reader against Debian's cpio: each reads what the other wrote."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from cargobay.images.cpio import NewcWriter, read_newc
from tests.support import require_binary


@pytest.fixture
def cpio() -> str:
    return require_binary("cpio", "Debian: apt-get install cpio")


def sample_archive() -> bytes:
    out = io.BytesIO()
    writer = NewcWriter(out, mtime=1_700_000_000)
    writer.add_file("init", b"#!/bin/busybox sh\necho hi\n", 0o755)
    writer.add_file("lib/modules/big.ko", os.urandom(70_001))
    writer.add_file("etc/empty", b"")
    writer.add_symlink("bin/sh", "busybox")
    writer.add_file("bin/busybox", b"\x7fELF", 0o755)
    writer.add_char_device("dev/console", 5, 1, 0o600)
    writer.add_directory("newroot", 0o700)
    writer.close()
    return out.getvalue()


def test_cpio_lists_what_we_wrote(cpio: str) -> None:
    listing = subprocess.run(
        [cpio, "-t", "--quiet"], input=sample_archive(), capture_output=True, check=True
    )
    assert listing.stdout.decode().split() == [
        "init",
        "lib",
        "lib/modules",
        "lib/modules/big.ko",
        "etc",
        "etc/empty",
        "bin",
        "bin/sh",
        "bin/busybox",
        "dev",
        "dev/console",
        "newroot",
    ]
    verbose = subprocess.run(
        [cpio, "-tv", "--quiet"], input=sample_archive(), capture_output=True, check=True
    ).stdout.decode()
    lines = {
        line.split()[-1] if "->" not in line else line.split()[-3]: line
        for line in verbose.splitlines()
    }
    assert lines["dev/console"].startswith("crw-------")
    assert "5,   1" in lines["dev/console"] or "5, 1" in lines["dev/console"]
    assert lines["bin/sh"].startswith("lrwxrwxrwx")
    assert lines["bin/sh"].endswith("bin/sh -> busybox")
    assert lines["init"].startswith("-rwxr-xr-x")
    assert lines["newroot"].startswith("drwx------")


def test_cpio_extracts_what_we_wrote(cpio: str, tmp_path: Path) -> None:
    data = sample_archive()
    subprocess.run(
        [
            cpio,
            "-i",
            "--quiet",
            "--make-directories",
            "--preserve-modification-time",
            "--no-absolute-filenames",
        ],
        input=data,
        cwd=tmp_path,
        check=True,
    )
    expected = {e.name: e for e in read_newc(data)}
    for name, entry in expected.items():
        path = tmp_path / name
        info = path.lstat()
        assert stat.S_IFMT(info.st_mode) == stat.S_IFMT(entry.mode), name
        if entry.is_file:
            assert path.read_bytes() == entry.data
            assert stat.S_IMODE(info.st_mode) == stat.S_IMODE(entry.mode)
            assert int(info.st_mtime) == 1_700_000_000
        elif entry.is_symlink:
            assert os.readlink(path) == entry.target
        elif entry.is_chardev and os.geteuid() == 0:
            assert (os.major(info.st_rdev), os.minor(info.st_rdev)) == (5, 1)


def test_we_read_what_cpio_wrote(cpio: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "file").write_bytes(b"x" * 1001)
    (src / "odd").write_bytes(b"123")
    (src / "odd").chmod(0o640)
    os.symlink("a/b/file", src / "link")
    names = "\n".join(["a", "a/b", "a/b/file", "odd", "link"]) + "\n"
    made = subprocess.run(
        [cpio, "-o", "-H", "newc", "--quiet"],
        input=names.encode(),
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout
    entries = {e.name: e for e in read_newc(made)}
    assert sorted(entries) == ["a", "a/b", "a/b/file", "link", "odd"]
    assert entries["a/b/file"].data == b"x" * 1001
    assert stat.S_IMODE(entries["odd"].mode) == 0o640
    assert entries["link"].is_symlink
    assert entries["link"].target == "a/b/file"
    assert entries["a"].is_dir
