"""A machine's files on the host: its data disk and its console log.

The data disk is a sparse file formatted as ext4 with the label ``cbdata`` by ``mke2fs``
on the file itself (no loop mount, no root needed); the guest's initramfs finds it by
label and puts the overlay root's upper layer on it.  The file costs only what the guest
writes: ``assume_storage_prezeroed`` (e2fsprogs 1.47) tells mke2fs that a fresh sparse
file reads as zeros, so it neither writes the inode tables nor leaves the guest kernel
to zero them in the background (slow under TCG).

The console log is what the guest printed on its serial port; ``tail_offset`` and
``tail_lines`` find the end of it without reading the whole file (``logs --tail``, and
the error about a guest that never answered); ``read_log`` serves ``logs [--follow]``.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cargobay.errors import HypervisorError

__all__ = [
    "DATA_DISK_LABEL",
    "create_data_disk",
    "find_tool",
    "read_log",
    "tail_lines",
    "tail_offset",
]

DATA_DISK_LABEL = "cbdata"
LOG_POLL_INTERVAL = 0.2
_MIB = 1024 * 1024


def find_tool(name: str) -> str:
    """``name`` on PATH or in the sbin directories (often not on a user's PATH)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if path is None:
        raise HypervisorError(f"{name} not found; install it (Debian: `apt-get install e2fsprogs`)")
    return path


async def create_data_disk(path: Path, size_mb: int) -> None:
    """Create ``path`` as a sparse ext4 image of ``size_mb`` MiB labelled ``cbdata``.

    Refuses to overwrite an existing file.  On failure the file is removed."""
    mke2fs = find_tool("mke2fs")
    with path.open("xb") as f:
        f.truncate(size_mb * _MIB)
    base = [mke2fs, "-t", "ext4", "-L", DATA_DISK_LABEL, "-q", "-F", "-m", "0"]
    attempts = [
        [*base, "-E", "assume_storage_prezeroed=1,nodiscard", str(path)],
        [*base, "-E", "nodiscard", str(path)],  # e2fsprogs before 1.47
    ]
    try:
        for n, argv in enumerate(attempts):
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await proc.communicate()
            if proc.returncode == 0:
                return
            text = out.decode(errors="replace").strip()
            if n == 0 and "assume_storage_prezeroed" in text:
                continue
            raise HypervisorError(
                f"could not format the data disk {path}: mke2fs exited with "
                f"{proc.returncode}: {text.splitlines()[-1] if text else 'no output'}"
            )
    except BaseException:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, no waiting
        raise


def tail_offset(path: Path, n: int, max_bytes: int = 4 * _MIB) -> int:
    """The byte offset in ``path`` where its last ``n`` lines start (0 if it is missing or
    has fewer lines; the end of the file for ``n == 0``).

    Reads backwards in blocks, at most ``max_bytes``.  A last line without a newline
    counts as a line."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return 0
    with f:
        end = f.seek(0, os.SEEK_END)
        if n <= 0:
            return end
        pos = end
        data = b""
        while pos > 0 and end - pos < max_bytes:
            step = min(64 * 1024, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            # A final newline ends the last line; the newline before the wanted lines
            # is the n-th one counted from the end of what remains.
            body = data[:-1] if data.endswith(b"\n") else data
            if body.count(b"\n") >= n:
                cut = len(body)
                for _ in range(n):
                    cut = body.rindex(b"\n", 0, cut)
                return pos + cut + 1
        return pos


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of a text file, without line endings (fewer if the file is
    shorter or missing); undecodable bytes are replaced."""
    if n <= 0:
        return []
    start = tail_offset(path, n)
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()[-n:]


async def read_log(
    path: Path, tail: int | None, follow: bool, still_running: Callable[[], bool]
) -> AsyncIterator[str]:
    """A log file as text: all of it or its last ``tail`` lines; with ``follow``, then what
    is appended, polling, until ``still_running()`` says no more can come.

    A file that shrinks (a new boot truncated it) is read again from its start.  UTF-8 is
    decoded across chunk boundaries; undecodable bytes are replaced."""
    position = 0 if tail is None else tail_offset(path, tail)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        try:
            with path.open("rb") as f:
                if f.seek(0, os.SEEK_END) < position:
                    position = 0
                f.seek(position)
                while chunk := f.read(64 * 1024):
                    position += len(chunk)
                    if text := decoder.decode(chunk):
                        yield text
        except FileNotFoundError:
            pass
        if not follow or not still_running():
            break
        await asyncio.sleep(LOG_POLL_INTERVAL)
    if rest := decoder.decode(b"", final=True):
        yield rest
