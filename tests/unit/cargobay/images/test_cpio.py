"""The newc writer and reader: exact header bytes, alignment, entry kinds, errors."""

from __future__ import annotations

import io
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargobay.images.cpio import CpioEntry, CpioError, NewcWriter, encode_entry, read_newc


def archive(build: object) -> bytes:
    out = io.BytesIO()
    writer = NewcWriter(out)
    assert callable(build)
    build(writer)
    writer.close()
    return out.getvalue()


def test_header_bytes_of_a_file_entry() -> None:
    data = encode_entry(
        CpioEntry(name="init", mode=stat.S_IFREG | 0o755, data=b"abc", ino=7, mtime=0x10)
    )
    expected_header = (
        b"070701"
        b"00000007"  # ino
        b"000081ED"  # mode: regular file, 0755
        b"00000000"  # uid
        b"00000000"  # gid
        b"00000001"  # nlink
        b"00000010"  # mtime
        b"00000003"  # filesize
        b"00000000"  # devmajor
        b"00000000"  # devminor
        b"00000000"  # rdevmajor
        b"00000000"  # rdevminor
        b"00000005"  # namesize: "init" + NUL
        b"00000000"  # check
    )
    assert len(expected_header) == 110
    # 110 + 5 = 115 -> padded to 116; data 3 -> padded to 4
    assert data == expected_header + b"init\0" + b"\0" + b"abc" + b"\0"


def test_every_entry_starts_4_byte_aligned_and_trailer_ends_the_archive() -> None:
    def build(w: NewcWriter) -> None:
        w.add_file("a", b"x")
        w.add_file("bb/ccc", b"12345")
        w.add_symlink("bin/sh", "busybox")

    data = archive(build)
    starts = [i for i in range(0, len(data), 4) if data[i : i + 6] == b"070701"]
    # a, bb, bb/ccc, bin, bin/sh, trailer: all found at 4-aligned offsets
    assert len(starts) == 6
    assert data.count(b"070701") == 6
    assert b"TRAILER!!!\0" in data[starts[-1] :]
    assert len(data) % 4 == 0


def test_round_trip_keeps_kinds_modes_and_contents() -> None:
    def build(w: NewcWriter) -> None:
        w.add_directory("dev")
        w.add_char_device("dev/console", 5, 1, 0o600)
        w.add_file("/init", b"#!/bin/busybox sh\n", 0o755)
        w.add_file("lib/modules/virtio.ko", bytes(range(256)) * 3)
        w.add_symlink("bin/mount", "busybox")
        w.add_directory("newroot", 0o700)

    entries = {e.name: e for e in read_newc(archive(build))}
    assert list(entries) == [
        "dev",
        "dev/console",
        "init",
        "lib",
        "lib/modules",
        "lib/modules/virtio.ko",
        "bin",
        "bin/mount",
        "newroot",
    ]
    console = entries["dev/console"]
    assert console.is_chardev
    assert (console.rdevmajor, console.rdevminor) == (5, 1)
    assert stat.S_IMODE(console.mode) == 0o600
    assert entries["init"].is_file
    assert stat.S_IMODE(entries["init"].mode) == 0o755
    assert entries["lib/modules/virtio.ko"].data == bytes(range(256)) * 3
    assert entries["bin/mount"].is_symlink
    assert entries["bin/mount"].target == "busybox"
    assert entries["lib"].is_dir
    assert entries["lib"].nlink == 2
    assert stat.S_IMODE(entries["newroot"].mode) == 0o700
    assert len({e.ino for e in entries.values()}) == len(entries)
    assert all(e.mtime == 0 for e in entries.values())


def test_same_input_gives_same_bytes() -> None:
    def build(w: NewcWriter) -> None:
        w.add_file("x/y", b"data")

    assert archive(build) == archive(build)


def test_existing_directory_is_not_added_twice() -> None:
    def build(w: NewcWriter) -> None:
        w.add_file("etc/a", b"")
        w.add_directory("etc")
        w.add_file("etc/b", b"")

    names = [e.name for e in read_newc(archive(build))]
    assert names == ["etc", "etc/a", "etc/b"]


@pytest.mark.parametrize("path", ["", "/", "a/../b", "..", "./."])
def test_bad_paths_are_refused(path: str) -> None:
    writer = NewcWriter(io.BytesIO())
    with pytest.raises(CpioError, match="bad archive path"):
        writer.add_file(path, b"")


def test_duplicates_and_file_parents_are_refused() -> None:
    writer = NewcWriter(io.BytesIO())
    writer.add_file("a", b"")
    with pytest.raises(CpioError, match="already in the archive"):
        writer.add_file("a", b"")
    with pytest.raises(CpioError, match="not a directory"):
        writer.add_file("a/b", b"")


def test_writing_after_close_is_refused() -> None:
    writer = NewcWriter(io.BytesIO())
    writer.close()
    with pytest.raises(CpioError, match="closed"):
        writer.add_directory("x")


def test_field_overflow_is_refused() -> None:
    with pytest.raises(CpioError, match="does not fit"):
        encode_entry(CpioEntry(name="x", mode=stat.S_IFREG, mtime=1 << 32))


def test_reader_rejects_damaged_archives() -> None:
    data = archive(lambda w: w.add_file("f", b"hello"))
    with pytest.raises(CpioError, match="bad magic"):
        list(read_newc(b"070707" + data[6:]))
    with pytest.raises(CpioError, match="truncated"):
        list(read_newc(data[:50]))
    # cut inside the file's data: the header is fine, the data is not all there
    with pytest.raises(CpioError, match="truncated data"):
        list(read_newc(data[:114]))
    with pytest.raises(CpioError, match="bad header field"):
        list(read_newc(data[:6] + b"zzzzzzzz" + data[14:]))


@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh_.-", min_size=1, max_size=12).filter(
            lambda s: s not in (".", "..")
        ),
        st.binary(max_size=300),
        max_size=12,
    )
)
def test_any_files_round_trip(files: dict[str, bytes]) -> None:
    def build(w: NewcWriter) -> None:
        for name, data in files.items():
            w.add_file(f"d/{name}", data)

    entries = {e.name: e.data for e in read_newc(archive(build)) if e.name != "d"}
    assert entries == {f"d/{name}": data for name, data in files.items()}
