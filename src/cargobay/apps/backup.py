"""Backup and restore of an app instance: configuration, data directories, named volumes.

One ``.tar.gz`` holds everything an instance needs to come back, possibly under a new name
(seed 002, 5.1.5: configuration bind-mounted from the instance directory, databases in
named volumes).

API (asyncio)::

    manifest = await create_backup(
        dest, instance="inst1", root=instance_dir,
        paths=["config/bot_config.toml", "data"],      # files or directories under root
        volumes=["inst1_mongo"], engine=engine, helper_image="maibot:latest")
    result = await restore_backup(
        dest, new_name="inst2", root=new_instance_dir,
        engine=engine, helper_image="maibot:latest")  # volumes renamed inst1_* -> inst2_*
    manifest = read_manifest(dest)

Layout of the archive: ``manifest.json``; ``files/<path>`` for each path under the
instance directory; ``volumes/<name>.tar``, the volume's content as the Engine's archive
endpoint gives it (``GET /containers/{id}/archive`` of a created, never started, helper
container that mounts the volume read-only; restored with ``PUT .../archive``).  Any image
works as the helper: nothing runs in it.

Failure handling: the archive is written to ``<dest>.part`` and renamed when complete;
restore unpacks with :mod:`cargobay.apps.archives` (so a hostile backup cannot escape the
target), refuses an existing ``root`` or volume, and removes what it made on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, ValidationError

from cargobay.apps.archives import ArchiveLimits, unpack
from cargobay.errors import (
    ArchiveError,
    BackupError,
    Conflict,
    ContainerError,
    InvalidInput,
    VolumeNotFound,
)

if TYPE_CHECKING:
    from cargobay.containers.engine import DockerEngine

FORMAT = 1
MOUNT = "/cargobay-volume"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class VolumeEntry(BaseModel):
    name: str
    member: str
    labels: dict[str, str] = Field(default_factory=dict)


class BackupManifest(BaseModel):
    format: int = FORMAT
    instance: str
    created: datetime
    paths: list[str]
    volumes: list[VolumeEntry] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    """Paths left out: device files, FIFOs, symlinks pointing outside the backup."""


class RestoreResult(BaseModel):
    manifest: BackupManifest
    root: Path
    volumes: dict[str, str]
    """Old volume name -> the name it was restored as."""


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(f"not a valid {what} name: {name!r}")
    return name


def _relative(root: Path, path: str) -> str:
    rel = Path(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise InvalidInput(f"{path!r}: give paths relative to the instance directory")
    if not (root / rel).exists():
        raise BackupError(f"{root / rel} does not exist; nothing to back up there")
    return rel.as_posix()


def _move_files(staging: Path, root: Path) -> None:
    files = staging / "files"
    if files.is_dir():
        files.rename(root)
    else:
        root.mkdir()


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def default_volume_name(old: str, old_instance: str, new_instance: str) -> str:
    """``inst1_mongo`` -> ``inst2_mongo``; a name without the instance prefix gets one."""
    if old.startswith(old_instance):
        return new_instance + old[len(old_instance) :]
    return f"{new_instance}_{old}"


async def _helper(engine: DockerEngine, image: str, volume: str, *, read_only: bool) -> str:
    config = {
        "Image": image,
        "Cmd": ["true"],
        "Labels": {"org.cargobay.apps.backup-helper": "1"},
        "HostConfig": {"Binds": [f"{volume}:{MOUNT}{':ro' if read_only else ''}"]},
    }
    return await engine.create_container(None, config)


async def _export_volume(engine: DockerEngine, image: str, volume: str, out: Path) -> None:
    helper = await _helper(engine, image, volume, read_only=True)
    try:
        # the archive endpoint streams a tar; DockerEngine has no method for it, so use its
        # plumbing (same error mapping as every other call)
        async with engine._response(
            "GET",
            f"containers/{helper}/archive",
            f"export volume {volume}",
            "container",
            params={"path": MOUNT},
        ) as response:
            with out.open("wb") as fh:
                async for chunk in response.content.iter_chunked(1 << 20):
                    fh.write(chunk)
    finally:
        await engine.remove_container(helper, force=True)


async def _import_volume(engine: DockerEngine, image: str, volume: str, tar: Path) -> None:
    data = await asyncio.to_thread(tar.read_bytes)
    helper = await _helper(engine, image, volume, read_only=False)
    try:
        async with engine._response(
            "PUT",
            f"containers/{helper}/archive",
            f"restore volume {volume}",
            "container",
            params={"path": "/"},
            data=data,
            headers={"Content-Type": "application/x-tar"},
        ):
            pass
    finally:
        await engine.remove_container(helper, force=True)


async def create_backup(
    dest: Path,
    *,
    instance: str,
    root: Path,
    paths: Sequence[str],
    volumes: Sequence[str] = (),
    engine: DockerEngine | None = None,
    helper_image: str | None = None,
) -> BackupManifest:
    """Write one tar.gz of ``paths`` (under ``root``) and the named ``volumes``."""
    _check_name(instance, "instance")
    rel_paths = [_relative(root, p) for p in paths]
    for volume in volumes:
        _check_name(volume, "volume")
    if volumes and (engine is None or helper_image is None):
        raise InvalidInput("backing up volumes needs a Docker engine and a helper image")
    if _exists(dest):
        raise BackupError(f"{dest} already exists; choose another file name")
    manifest = BackupManifest(instance=instance, created=datetime.now(UTC), paths=rel_paths)
    part = dest.with_name(dest.name + ".part")
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=dest.parent) as scratch:
        try:
            exported: list[tuple[VolumeEntry, Path]] = []
            for volume in volumes:
                assert engine is not None
                assert helper_image is not None
                try:
                    info = await engine.inspect_volume(volume)
                except VolumeNotFound as err:
                    raise BackupError(f"volume {volume} does not exist") from err
                entry = VolumeEntry(
                    name=volume, member=f"volumes/{volume}.tar", labels=info.get("Labels") or {}
                )
                out = Path(scratch) / f"{volume}.tar"
                await _export_volume(engine, helper_image, volume, out)
                exported.append((entry, out))
            manifest.volumes = [entry for entry, _ in exported]

            def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
                """Leave out what a restore would refuse: device files, FIFOs, and links
                that point outside the backed-up tree (they are listed in the manifest)."""
                target = posixpath.normpath(
                    posixpath.join(posixpath.dirname(info.name), info.linkname)
                )
                outside = info.linkname.startswith("/") or not target.startswith("files/")
                if info.isdev() or info.isfifo() or (info.issym() and outside):
                    manifest.skipped.append(info.name.removeprefix("files/"))
                    return None
                return info

            def write() -> None:
                with tarfile.open(part, "w:gz") as tar:
                    for rel in rel_paths:
                        tar.add(root / rel, arcname=f"files/{rel}", filter=keep)
                    for entry, out in exported:
                        tar.add(out, arcname=entry.member)
                    data = manifest.model_dump_json(indent=2).encode()
                    info = tarfile.TarInfo("manifest.json")
                    info.size = len(data)
                    info.mtime = int(manifest.created.timestamp())
                    tar.addfile(info, io.BytesIO(data))
                os.replace(part, dest)

            await asyncio.to_thread(write)
        except ContainerError as err:
            raise BackupError(f"backing up {instance}: {err}") from err
        finally:
            part.unlink(missing_ok=True)
    return manifest


def read_manifest(archive: Path) -> BackupManifest:
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise BackupError(f"{archive}: manifest.json is not a file")
            manifest = BackupManifest.model_validate_json(member.read())
    except (tarfile.TarError, KeyError, OSError, EOFError) as err:
        raise BackupError(f"{archive}: not a CargoBay instance backup ({err})") from err
    except ValidationError as err:
        raise BackupError(f"{archive}: the manifest is invalid: {err}") from err
    if manifest.format != FORMAT:
        raise BackupError(f"{archive}: backup format {manifest.format} is not supported")
    return manifest


async def restore_backup(
    archive: Path,
    *,
    new_name: str,
    root: Path,
    engine: DockerEngine | None = None,
    helper_image: str | None = None,
    volume_name: Callable[[str, str, str], str] = default_volume_name,
    limits: ArchiveLimits | None = None,
) -> RestoreResult:
    """Restore a backup as instance ``new_name``: its files into the new directory ``root``
    and each volume into a new volume (``volume_name(old, old_instance, new_name)``)."""
    _check_name(new_name, "instance")
    manifest = await asyncio.to_thread(read_manifest, archive)
    if _exists(root):
        raise Conflict(f"{root} already exists; restore into a new directory")
    if manifest.volumes and (engine is None or helper_image is None):
        raise InvalidInput("this backup has volumes: restoring needs a Docker engine and image")
    renames = {v.name: volume_name(v.name, manifest.instance, new_name) for v in manifest.volumes}
    for new in renames.values():
        _check_name(new, "volume")
    if engine is not None:
        for new in renames.values():
            try:
                await engine.inspect_volume(new)
            except VolumeNotFound:
                continue
            raise Conflict(f"volume {new} already exists; choose another instance name")
    staging = root.with_name(f".{root.name}.restore")
    created: list[str] = []
    try:
        try:
            await asyncio.to_thread(unpack, archive, staging, limits=limits, replace=True)
        except ArchiveError as err:
            raise BackupError(f"{archive}: cannot be restored: {err}") from err
        for entry in manifest.volumes:
            assert engine is not None
            assert helper_image is not None
            new = renames[entry.name]
            labels = {**entry.labels, "org.cargobay.apps.restored-from": entry.name}
            await engine.create_volume(new, labels=labels)
            created.append(new)
            await _import_volume(engine, helper_image, new, staging / entry.member)
        await asyncio.to_thread(_move_files, staging, root)
    except BaseException as err:
        await asyncio.to_thread(shutil.rmtree, root, True)
        for name in created:
            assert engine is not None
            with contextlib.suppress(ContainerError):
                await engine.remove_volume(name, force=True)
        if isinstance(err, ContainerError):
            raise BackupError(f"restoring {archive} as {new_name}: {err}") from err
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return RestoreResult(manifest=manifest, root=root, volumes=renames)
