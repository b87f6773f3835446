"""Safe unpacking of downloaded .zip and .tar(.gz/.xz/.bz2) archives.

A release archive (NapCat, an adapter) comes from the network and is not trusted.

API::

    names = unpack(archive, target)                 # -> list of member paths written
    names = unpack(archive, target, strip_components=1)   # drop the release's top folder
    names = await unpack_async(archive, target, limits=ArchiveLimits(max_files=10_000))
    fmt = archive_format(archive)                   # "zip" | "tar"
    names = await install_archive(DownloadSpec.of(url, cache, sha256), target,
                                  strip_components=1)    # download + verify + unpack

Rules (each broken one is an :class:`~cargobay.errors.ArchiveError`, and nothing is left):

- Member names must be relative and stay inside the target: no absolute paths, no drive
  letters, no backslashes, no ``..`` component.
- Regular files and directories only, plus links that stay inside: a symlink whose target
  (resolved with every link the archive made) is inside the target, a hardlink to a regular
  file the archive already holds.  Device files, FIFOs and sockets are refused.
- Limits on the number of members and on the bytes actually written (per file and in
  total), counted while writing, so a lying header (a zip bomb) stops too.
- Unpacking happens in a temp dir next to ``target`` (same file system) that is renamed to
  ``target`` at the end; a failure removes it.  ``target`` must not exist unless
  ``replace=True``, which swaps the old tree out only after the new one is complete.
- Permissions keep the rwx bits only (no setuid/setgid/sticky); owners are not restored.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import httpx

from cargobay.apps.downloads import DownloadSpec, ProgressCallback, download
from cargobay.errors import ArchiveError

COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_files: int = 100_000
    max_file_bytes: int = 4 << 30
    max_total_bytes: int = 8 << 30


def archive_format(archive: Path) -> Literal["zip", "tar"]:
    """ "zip" or "tar" (any compression tarfile reads), judged by content, not the name."""
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive file")
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ArchiveError(f"{archive}: neither a zip nor a tar archive")


def _clean_name(archive: Path, name: str) -> str:
    """The member's relative POSIX path, or ArchiveError if it could leave the target."""
    if "\\" in name or "\x00" in name:
        raise ArchiveError(f"{archive}: member {name!r} has a backslash or NUL in its name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{archive}: member {name!r} points outside the target (..)")
    return "/".join(parts)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Writer:
    """Writes members under ``root`` while counting against the limits."""

    def __init__(self, archive: Path, root: Path, limits: ArchiveLimits, strip: int = 0) -> None:
        self.archive = archive
        self.strip = strip
        self.root = root
        self.real_root = os.path.realpath(root)
        self.limits = limits
        self.count = 0
        self.total = 0
        self.names: list[str] = []
        self.files: set[str] = set()
        self.symlinks: list[tuple[str, str]] = []

    def member(self, raw: str) -> str | None:
        """The member's path under the target; None when ``strip`` removes all of it."""
        self.count += 1
        if self.count > self.limits.max_files:
            raise ArchiveError(f"{self.archive}: more than {self.limits.max_files} members")
        return self._strip(_clean_name(self.archive, raw))

    def _strip(self, name: str) -> str | None:
        if not self.strip:
            return name
        parts = name.split("/") if name else []
        return "/".join(parts[self.strip :]) if len(parts) > self.strip else None

    def directory(self, name: str, mode: int) -> None:
        if name:
            (self.root / name).mkdir(parents=True, exist_ok=True)
            os.chmod(self.root / name, (mode & 0o777) | 0o700)
            self.names.append(name)

    def file(self, name: str, src: IO[bytes], mode: int) -> None:
        if not name:
            raise ArchiveError(f"{self.archive}: a file member without a name")
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with path.open("wb") as out:
            while block := src.read(COPY_BLOCK):
                written += len(block)
                self.total += len(block)
                if written > self.limits.max_file_bytes:
                    raise ArchiveError(
                        f"{self.archive}: {name} is larger than {self.limits.max_file_bytes} bytes"
                    )
                if self.total > self.limits.max_total_bytes:
                    raise ArchiveError(
                        f"{self.archive}: unpacks to more than {self.limits.max_total_bytes} bytes"
                    )
                out.write(block)
        os.chmod(path, mode & 0o777)
        self.names.append(name)
        self.files.add(name)

    def hardlink(self, name: str, raw_target: str) -> None:
        target = self._strip(_clean_name(self.archive, raw_target))
        if target is None or target not in self.files:
            raise ArchiveError(
                f"{self.archive}: hardlink {name} -> {raw_target} does not name a file "
                "inside the archive"
            )
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(self.root / target, self.root / name)
        self.names.append(name)
        self.files.add(name)

    def symlink(self, name: str, link: str) -> None:
        if not name:
            raise ArchiveError(f"{self.archive}: a symlink without a name")
        if link.startswith("/") or "\\" in link or "\x00" in link:
            raise ArchiveError(f"{self.archive}: symlink {name} -> {link} is absolute")
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
        if lexical == ".." or lexical.startswith("../"):
            raise ArchiveError(f"{self.archive}: symlink {name} -> {link} points outside")
        self.symlinks.append((name, link))  # made last: no file is ever written through one

    def finish_links(self) -> None:
        for name, link in self.symlinks:
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                raise ArchiveError(f"{self.archive}: symlink {name} clashes with another member")
            os.symlink(link, path)
            self.names.append(name)
        # with every link in place, none may resolve outside (links through links included)
        for name, link in self.symlinks:
            real = os.path.realpath(self.root / name)
            if not _inside(self.real_root, real):
                raise ArchiveError(f"{self.archive}: symlink {name} -> {link} points outside")


def _unpack_zip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = writer.member(info.filename)
            if name is None:
                continue
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if info.is_dir():
                writer.directory(name, mode or 0o755)
            elif kind == stat.S_IFLNK:
                if info.file_size > 4096:
                    raise ArchiveError(f"{archive}: symlink {info.filename!r} is too long")
                writer.symlink(name, zf.read(info).decode("utf-8", "surrogateescape"))
            elif kind in (0, stat.S_IFREG):
                with zf.open(info) as src:
                    writer.file(name, src, mode or 0o644)
            else:
                raise ArchiveError(f"{archive}: member {info.filename!r} is a special file")


def _unpack_tar(archive: Path, writer: _Writer) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            name = writer.member(member.name)
            if name is None:
                continue
            if member.isdir():
                writer.directory(name, member.mode)
            elif member.isreg():
                src = tf.extractfile(member)
                if src is None:  # pragma: no cover - isreg() members always have data
                    raise ArchiveError(f"{archive}: cannot read {member.name!r}")
                with src:
                    writer.file(name, src, member.mode)
            elif member.issym():
                writer.symlink(name, member.linkname)
            elif member.islnk():
                writer.hardlink(name, member.linkname)
            else:
                raise ArchiveError(
                    f"{archive}: member {member.name!r} is a device, FIFO or other special file"
                )


@contextmanager
def _staging(target: Path) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def unpack(
    archive: Path,
    target: Path,
    *,
    limits: ArchiveLimits | None = None,
    replace: bool = False,
    strip_components: int = 0,
) -> list[str]:
    """Unpack ``archive`` into the new directory ``target``; returns the members written.
    ``strip_components`` drops that many leading path components (a release's top folder),
    skipping members that lie above it, like GNU tar's option of that name."""
    limits = limits or ArchiveLimits()
    if strip_components < 0:
        raise ArchiveError("strip_components must not be negative")
    fmt = archive_format(archive)
    if (target.exists() or target.is_symlink()) and not replace:
        raise ArchiveError(f"{target} already exists; remove it or unpack with replace")
    with _staging(target) as staging:
        writer = _Writer(archive, staging, limits, strip_components)
        try:
            (_unpack_zip if fmt == "zip" else _unpack_tar)(archive, writer)
            writer.finish_links()
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
            raise ArchiveError(f"{archive}: damaged or unreadable archive: {err}") from err
        os.chmod(staging, 0o755)
        if target.exists() or target.is_symlink():
            old = staging.with_name(staging.name + ".old")
            os.rename(target, old)
            os.rename(staging, target)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.rename(staging, target)
    return writer.names


async def unpack_async(
    archive: Path,
    target: Path,
    *,
    limits: ArchiveLimits | None = None,
    replace: bool = False,
    strip_components: int = 0,
) -> list[str]:
    """:func:`unpack` in a worker thread."""
    return await asyncio.to_thread(
        unpack, archive, target, limits=limits, replace=replace, strip_components=strip_components
    )


async def install_archive(
    spec: DownloadSpec,
    target: Path,
    *,
    strip_components: int = 0,
    limits: ArchiveLimits | None = None,
    on_progress: ProgressCallback | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[str]:
    """Download ``spec`` (resumable, verified; kept at ``spec.dest`` as a cache) and unpack
    it into ``target``, replacing a previous version only once the new one is complete:
    what the NapCat installer does with a release zip."""
    archive = await download(spec, on_progress=on_progress, client=client)
    return await unpack_async(
        archive, target, limits=limits, replace=True, strip_components=strip_components
    )
