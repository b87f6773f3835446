"""A writer (and a small reader) for the cpio "newc" format, the format of a Linux initramfs.

The kernel unpacks a newc archive into its initial rootfs (Documentation/driver-api/
early-userspace/buffer-format.rst).  Writing it ourselves means building an initramfs
needs neither root (device nodes are just header fields) nor a staging directory nor
the cpio tool.  Each entry is

    header   "070701" and 13 fields of 8 hex digits: ino, mode, uid, gid, nlink, mtime,
             filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
    name     namesize bytes including the terminating NUL, padded so that header + name
             is a multiple of 4
    data     filesize bytes (a symlink's data is its target), padded to a multiple of 4

and the archive ends with an entry named ``TRAILER!!!``.  Hard links are not used (every
file is stored in full); mtimes default to 0 so that the same input gives the same bytes.

``NewcWriter`` writes entries to a binary stream and creates missing parent directories
itself, so callers can add files in any order.  ``read_newc`` parses an archive back
(tests, and inspecting a built initramfs).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["MAGIC", "TRAILER", "CpioEntry", "CpioError", "NewcWriter", "read_newc"]

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_HEADER_LEN = 110
_FIELDS = 13
_MAX_FIELD = 0xFFFFFFFF


class CpioError(ValueError):
    """A malformed archive, or an entry the newc format cannot hold."""


@dataclass(frozen=True, slots=True)
class CpioEntry:
    name: str
    mode: int
    """File type bits and permissions (``stat.S_IFREG | 0o644``...)."""
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    nlink: int = 1
    ino: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_chardev(self) -> bool:
        return stat.S_ISCHR(self.mode)

    @property
    def target(self) -> str:
        """A symlink's target."""
        return self.data.decode()


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def encode_entry(entry: CpioEntry) -> bytes:
    """The bytes of one entry (header, padded name, padded data)."""
    name = entry.name.encode() + b"\0"
    fields = (
        entry.ino,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.nlink,
        entry.mtime,
        len(entry.data),
        0,
        0,
        entry.rdevmajor,
        entry.rdevminor,
        len(name),
        0,
    )
    for value in fields:
        if not 0 <= value <= _MAX_FIELD:
            raise CpioError(f"{entry.name}: value {value} does not fit a newc header field")
    header = MAGIC + b"".join(b"%08X" % value for value in fields)
    head = header + name
    return head + _pad(len(head)) + entry.data + _pad(len(entry.data))


def _normalize(path: str) -> str:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise CpioError(f"bad archive path {path!r}")
    return "/".join(parts)


class NewcWriter:
    """Writes a newc archive to ``out``.  Paths are relative to the archive root
    (a leading ``/`` is dropped); ``close()`` writes the trailer."""

    def __init__(self, out: BinaryIO, *, mtime: int = 0) -> None:
        self._out = out
        self._mtime = mtime
        self._next_ino = 1
        self._names: dict[str, int] = {}
        """Every path written so far, with its mode."""
        self._closed = False

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def add_directory(self, path: str, mode: int = 0o755) -> None:
        name = _normalize(path)
        existing = self._names.get(name)
        if existing is not None:
            if not stat.S_ISDIR(existing):
                raise CpioError(f"{name} is already in the archive and is not a directory")
            return
        self._write(name, stat.S_IFDIR | (mode & 0o7777), b"", nlink=2)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._write(_normalize(path), stat.S_IFREG | (mode & 0o7777), data)

    def add_symlink(self, path: str, target: str) -> None:
        if not target:
            raise CpioError(f"{path}: empty symlink target")
        self._write(_normalize(path), stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._write(_normalize(path), stat.S_IFCHR | (mode & 0o7777), b"", rdev=(major, minor))

    def close(self) -> None:
        if self._closed:
            return
        self._out.write(encode_entry(CpioEntry(name=TRAILER, mode=0, nlink=1)))
        self._closed = True

    def _write(
        self, name: str, mode: int, data: bytes, *, nlink: int = 1, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        if self._closed:
            raise CpioError("the archive is closed")
        if name in self._names:
            raise CpioError(f"{name} is already in the archive")
        parent = name.rpartition("/")[0]
        if parent:
            self.add_directory(parent)
        entry = CpioEntry(
            name=name,
            mode=mode,
            data=data,
            mtime=self._mtime,
            nlink=nlink,
            ino=self._next_ino,
            rdevmajor=rdev[0],
            rdevminor=rdev[1],
        )
        self._out.write(encode_entry(entry))
        self._next_ino += 1
        self._names[name] = mode


def read_newc(data: bytes) -> Iterator[CpioEntry]:
    """The entries of a newc archive, up to (not including) the trailer."""
    pos = 0
    while True:
        header = data[pos : pos + _HEADER_LEN]
        if len(header) < _HEADER_LEN:
            raise CpioError(f"truncated header at offset {pos}")
        if header[:6] != MAGIC:
            raise CpioError(f"bad magic {header[:6]!r} at offset {pos}")
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(_FIELDS)]
        except ValueError as err:
            raise CpioError(f"bad header field at offset {pos}") from err
        ino, mode, uid, gid, nlink, mtime, size, _, _, rmajor, rminor, namesize, _ = fields
        name_start = pos + _HEADER_LEN
        name_end = name_start + namesize
        if namesize == 0 or name_end > len(data) or data[name_end - 1] != 0:
            raise CpioError(f"bad name at offset {pos}")
        name = data[name_start : name_end - 1].decode()
        data_start = name_end + (-(name_end - pos) % 4)
        data_end = data_start + size
        if data_end > len(data):
            raise CpioError(f"truncated data of {name!r}")
        if name == TRAILER:
            return
        yield CpioEntry(
            name=name,
            mode=mode,
            data=data[data_start:data_end],
            uid=uid,
            gid=gid,
            mtime=mtime,
            nlink=nlink,
            ino=ino,
            rdevmajor=rmajor,
            rdevminor=rminor,
        )
        pos = data_end + (-size % 4)
