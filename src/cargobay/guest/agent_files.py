"""The agent's file operations: read, write (atomic), stat, list.

Standard library and virga only (runs inside the guest).

Every path is absolute (checked by ``protocol.parse_request``).  OS errors become
``RequestError``s whose kind follows the errno (``protocol.kind_for_errno``), with a
message that names the operation and the path.  File I/O is plain blocking calls on the
event loop, one chunk (``DATA_CHUNK``) at a time between awaits: local files answer in
microseconds, and a write of each chunk to the stream waits for the yamux window, so a
large file never sits in memory.

``write`` goes to a temporary file next to the target (``.NAME.cargobay-XXXXXXXX.tmp``),
is fsynced and renamed over the target only once END arrives, so a failed or abandoned
write leaves the old file untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from typing import Any

from cargobay.guest.channel import read_frame, write_frame
from cargobay.guest.protocol import (
    DATA_CHUNK,
    FileListRequest,
    FileReadRequest,
    FileStatRequest,
    FileWriteRequest,
    Kind,
    RequestError,
    error_from_oserror,
)
from virga.yamux.aio import Stream

__all__ = ["file_list", "file_read", "file_stat", "file_write", "stat_entry"]


async def _result(stream: Stream, obj: dict[str, Any]) -> None:
    await write_frame(stream, Kind.RESULT, json.dumps(obj, separators=(",", ":")).encode())


def _type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def stat_entry(path: str, st: os.stat_result) -> dict[str, Any]:
    """The protocol's STAT object for ``path`` (``st`` from lstat)."""
    target = None
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            target = os.readlink(path)
    return {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "path": path,
        "type": _type(st.st_mode),
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "target": target,
    }


def _isdir_error(path: str) -> RequestError:
    return RequestError("is_a_directory", f"{path} is a directory", errno.EISDIR)


async def file_stat(stream: Stream, req: FileStatRequest) -> None:
    try:
        st = os.lstat(req.path)
    except OSError as err:
        raise error_from_oserror(err, f"cannot stat {req.path}") from err
    await _result(stream, stat_entry(req.path, st))


async def file_list(stream: Stream, req: FileListRequest) -> None:
    entries = []
    try:
        with os.scandir(req.path) as it:
            for entry in it:
                with contextlib.suppress(FileNotFoundError):  # removed while listing
                    entries.append(stat_entry(entry.path, entry.stat(follow_symlinks=False)))
    except OSError as err:
        raise error_from_oserror(err, f"cannot list {req.path}") from err
    entries.sort(key=lambda e: str(e["name"]))
    await _result(stream, {"entries": entries})


async def file_read(stream: Stream, req: FileReadRequest) -> None:
    path = req.path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        raise error_from_oserror(err, f"cannot open {path}") from err
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _isdir_error(path)
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise RequestError("invalid", f"{path} is not a regular file (a pipe or socket)")
        if req.offset:
            os.lseek(fd, req.offset, os.SEEK_SET)
        remaining = req.length
        total = 0
        while remaining is None or remaining > 0:
            size = DATA_CHUNK if remaining is None else min(DATA_CHUNK, remaining)
            data = os.read(fd, size)
            if not data:
                break
            await write_frame(stream, Kind.DATA, data)
            total += len(data)
            if remaining is not None:
                remaining -= len(data)
    except BlockingIOError as err:
        raise RequestError("invalid", f"cannot read {path}: it has no data ready") from err
    except OSError as err:
        raise error_from_oserror(err, f"cannot read {path}") from err
    finally:
        os.close(fd)
    await _result(stream, {"size": total})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _receive(stream: Stream, fd: int) -> int:
    """Write DATA frames to ``fd`` until END; the number of bytes written."""
    written = 0
    while True:
        frame = await read_frame(stream)
        if frame is None:
            raise RequestError("protocol", "the stream ended before END")
        kind, payload = frame
        if kind == Kind.END:
            return written
        if kind != Kind.DATA:
            raise RequestError("protocol", f"expected DATA or END, got {kind!r}")
        _write_all(fd, payload)
        written += len(payload)


def _write_target(path: str) -> str:
    """Where a write of ``path`` lands: through a symlink, to its target."""
    return os.path.realpath(path) if os.path.islink(path) else path


async def file_write(stream: Stream, req: FileWriteRequest) -> None:
    path = req.path
    target = _write_target(path)
    parent = os.path.dirname(target) or "/"
    existing: os.stat_result | None = None
    try:
        if req.mkdirs:
            os.makedirs(parent, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(target)
    except OSError as err:
        raise error_from_oserror(err, f"cannot write {path}") from err
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise _isdir_error(path)
    if req.mode is not None:
        mode = req.mode
    elif existing is not None:
        mode = stat.S_IMODE(existing.st_mode)
    else:
        mode = 0o644

    if req.append:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
        except OSError as err:
            raise error_from_oserror(err, f"cannot open {path}") from err
        try:
            written = await _receive(stream, fd)
        except OSError as err:
            raise error_from_oserror(err, f"cannot write {path}") from err
        finally:
            os.close(fd)
        await _result(stream, {"written": written})
        return

    tmp = os.path.join(parent, f".{os.path.basename(target)}.cargobay-{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise error_from_oserror(err, f"cannot write {path}") from err
    renamed = False
    try:
        written = await _receive(stream, fd)
        os.fchmod(fd, mode)
        if existing is not None and (existing.st_uid, existing.st_gid) != (
            os.geteuid(),
            os.getegid(),
        ):
            with contextlib.suppress(OSError):  # keep the owner where we may
                os.fchown(fd, existing.st_uid, existing.st_gid)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, target)
        renamed = True
    except OSError as err:
        raise error_from_oserror(err, f"cannot write {path}") from err
    finally:
        if fd >= 0:
            os.close(fd)
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    await _result(stream, {"written": written})
