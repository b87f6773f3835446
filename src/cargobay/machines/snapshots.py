"""Snapshots of a machine on disk: what a snapshot is made of, and how it is kept.

A snapshot ``TAG`` of machine ``M`` is a directory ``<machine dir>/snapshots/TAG``:

    state          the VM's full state (devices and RAM) as a QEMU migration stream
    data.img       a sparse copy of the data disk taken while the vCPUs were stopped
    snapshot.json  ``SnapshotInfo``: when, of which shape (cpus, memory, image, machine)
    memory.ram     } the template form, made on first use by ``fork``: the guest RAM as a
    state.shared   } file, and a device-only stream saved with ``x-ignore-shared``

A snapshot is written into ``TAG.partial`` and renamed into place when complete, so a
crash never leaves a half snapshot under a real tag (``SnapshotDir.sweep`` removes the
leftovers).  A warm start loads ``state`` into a new QEMU (``-incoming defer``) after
copying ``data.img`` back; a clone maps ``memory.ram`` privately (copy-on-write: the
clones share every page none of them wrote) and loads ``state.shared``, which is only
device state and loads in tens of milliseconds (Kata Containers' VM templating).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from cargobay.errors import Conflict, InvalidInput, NotFound, StoreError

__all__ = [
    "TAG_RE",
    "Restore",
    "SnapshotDir",
    "SnapshotInfo",
    "check_tag",
    "copy_sparse",
    "new_tag",
]

TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MANIFEST = "snapshot.json"


class SnapshotInfo(BaseModel):
    tag: str
    machine: str
    created_at: datetime
    cpus: int
    memory_mb: int
    image: str
    backend: str
    size_bytes: int = 0
    """Bytes used on the host by the snapshot's files (sparse files count what is used)."""
    template: bool = False
    """Whether the template form (``memory.ram`` + ``state.shared``) exists yet."""


@dataclass(frozen=True, slots=True)
class Restore:
    """How ``MachineService._boot`` starts a VM from a saved state instead of booting it."""

    state: Path
    ignore_shared: bool = False
    memory_file: Path | None = None
    memory_share: bool = False
    hostname: str | None = None
    """Set in the guest after the restore (a clone keeps its template's name otherwise)."""
    user_nic: bool = False
    """The saved VM had a user-mode NIC (host ports) that this one keeps without the host
    forwards: the device layout must match the saved one."""


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise InvalidInput(
            f"bad snapshot tag {tag!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return tag


def new_tag(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("snap-%Y%m%d-%H%M%S-%f")


class SnapshotDir:
    """The snapshots of one machine (``<machine dir>/snapshots``)."""

    def __init__(self, machine_dir: Path, machine: str) -> None:
        self.root = machine_dir / "snapshots"
        self.machine = machine

    def path(self, tag: str) -> Path:
        return self.root / check_tag(tag)

    def partial(self, tag: str) -> Path:
        return self.root / f"{check_tag(tag)}.partial"

    def list(self) -> list[SnapshotInfo]:
        if not self.root.is_dir():
            return []
        infos = []
        for entry in sorted(self.root.iterdir()):
            if entry.suffix == ".partial" or not (entry / MANIFEST).is_file():
                continue
            infos.append(self._read(entry))
        return sorted(infos, key=lambda i: i.created_at)

    def get(self, tag: str) -> SnapshotInfo:
        path = self.path(tag)
        if not (path / MANIFEST).is_file():
            known = ", ".join(i.tag for i in self.list()) or "none"
            raise NotFound(
                f"machine {self.machine!r} has no snapshot {tag!r} (snapshots: {known}); "
                f"take one with `cargobay vm snapshot {self.machine} --tag {tag}`"
            )
        return self._read(path)

    def begin(self, tag: str) -> Path:
        """A fresh ``TAG.partial`` directory; refuses a tag in use."""
        if (self.path(tag) / MANIFEST).exists():
            raise Conflict(f"machine {self.machine!r} already has a snapshot {tag!r}")
        partial = self.partial(tag)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        return partial

    def commit(self, tag: str, info: SnapshotInfo) -> SnapshotInfo:
        partial = self.partial(tag)
        info = info.model_copy(update={"size_bytes": disk_usage(partial)})
        (partial / MANIFEST).write_text(info.model_dump_json(indent=2) + "\n")
        partial.replace(self.path(tag))
        return info

    def mark_template(self, tag: str) -> None:
        path = self.path(tag)
        info = self._read(path).model_copy(update={"template": True})
        info = info.model_copy(update={"size_bytes": disk_usage(path)})
        tmp = path / (MANIFEST + ".tmp")
        tmp.write_text(info.model_dump_json(indent=2) + "\n")
        tmp.replace(path / MANIFEST)

    def delete(self, tag: str) -> None:
        self.get(tag)
        shutil.rmtree(self.path(tag))

    def sweep(self) -> None:
        """Remove what a crash mid-snapshot left (``*.partial``)."""
        if self.root.is_dir():
            for entry in self.root.glob("*.partial"):
                shutil.rmtree(entry, ignore_errors=True)

    def _read(self, path: Path) -> SnapshotInfo:
        return SnapshotInfo.model_validate_json((path / MANIFEST).read_text())


def disk_usage(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


async def copy_sparse(source: Path, target: Path) -> None:
    """Copy a disk image keeping it sparse (reflink where the file system can), through a
    temporary name: ``target`` is either the old file or the whole new one."""
    tmp = target.with_name(target.name + ".copy")
    proc = await asyncio.create_subprocess_exec(
        "cp",
        "--sparse=always",
        "--reflink=auto",
        "--",
        str(source),
        str(tmp),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot copy {source} to {target}: {out.decode(errors='replace')}")
    tmp.replace(target)
