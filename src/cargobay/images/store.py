"""The image store: the built images under ``Paths.images`` (one directory each).

An image directory counts only once its ``manifest.json`` exists (see manifest.py).
Builds happen in hidden ``.build-<name>-*`` directories next to the images and are
moved into place by ``install``, so readers never see half an image; ``remove`` first
renames the directory away, so a removal is atomic too.  Hidden entries (``.``) are
never listed.  The store does not know which VMs use an image: the machines service
checks that before calling ``remove``.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from cargobay.errors import ImageError, InvalidInput, NotFound
from cargobay.images.manifest import MANIFEST, ImageFile, ImageManifest, load_manifest

__all__ = ["ImageStore", "file_record", "validate_name"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(
            f"invalid image name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def file_record(directory: Path, name: str) -> ImageFile:
    """Size and sha256 of ``directory/name``, for a manifest."""
    digest = hashlib.sha256()
    size = 0
    with (directory / name).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return ImageFile(path=name, size=size, sha256=digest.hexdigest())


class ImageStore:
    """The images in one directory (``Paths.images``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / MANIFEST).is_file()

    def get(self, name: str) -> ImageManifest:
        """The manifest of a built image; ``NotFound`` if there is none."""
        directory = self.path(name)
        if not (directory / MANIFEST).is_file():
            raise NotFound(f"no image named {name!r}; build it with `cargobay image build {name}`")
        return load_manifest(directory)

    def find(self, name: str) -> ImageManifest | None:
        """The manifest if the image exists and is readable, else None."""
        try:
            return self.get(name)
        except (NotFound, ImageError):
            return None

    def list(self) -> list[ImageManifest]:
        """Every complete image, by name.  An unreadable manifest is skipped (``get``
        reports it)."""
        if not self.root.is_dir():
            return []
        images = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not _NAME.match(entry.name):
                continue
            manifest = self.find(entry.name)
            if manifest is not None:
                images.append(manifest)
        return images

    def complete(self, name: str) -> bool:
        """The manifest exists and every file it lists has the recorded size (cheap; see
        ``verify`` for checksums)."""
        manifest = self.find(name)
        if manifest is None:
            return False
        directory = self.path(name)
        for item in self._files(manifest):
            path = directory / item.path
            if not path.is_file() or path.stat().st_size != item.size:
                return False
        return True

    def verify(self, name: str) -> builtins.list[str]:
        """Problems with an image's files (missing, wrong size or checksum); empty if none."""
        manifest = self.get(name)
        directory = self.path(name)
        problems = []
        for item in self._files(manifest):
            if not (directory / item.path).is_file():
                problems.append(f"{item.path} is missing")
                continue
            actual = file_record(directory, item.path)
            if actual.size != item.size:
                problems.append(f"{item.path} has {actual.size} bytes, expected {item.size}")
            elif actual.sha256 != item.sha256:
                problems.append(f"{item.path} has a different sha256 than the manifest says")
        return problems

    def disk_usage(self, name: str) -> int:
        """Bytes the image occupies on disk (rootfs.ext4 is sparse)."""
        directory = self.path(name)
        if not directory.is_dir():
            raise NotFound(f"no image named {name!r}")
        return sum(p.lstat().st_blocks * 512 for p in directory.rglob("*") if not p.is_dir())

    def remove(self, name: str) -> None:
        directory = self.path(name)
        if not directory.is_dir():
            raise NotFound(f"no image named {name!r}; `cargobay image ls` lists the images")
        trash = Path(tempfile.mkdtemp(dir=self.root, prefix=f".remove-{name}-"))
        directory.rename(trash / name)
        shutil.rmtree(trash)

    def install(self, name: str, built: Path) -> Path:
        """Move a finished build directory (with its manifest) into place, replacing the
        image of that name.  ``built`` must be in ``root`` (same filesystem)."""
        if not (built / MANIFEST).is_file():
            raise ImageError(f"{built} has no {MANIFEST}; it is not a finished image")
        target = self.path(name)
        trash: Path | None = None
        if target.exists():
            trash = Path(tempfile.mkdtemp(dir=self.root, prefix=f".replace-{name}-"))
            target.rename(trash / name)
        built.rename(target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return target

    def clean_stale(self) -> None:
        """Remove what interrupted builds and removals left behind (call under the build
        lock, when no build is running)."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name.startswith((".build-", ".remove-", ".replace-")) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    @staticmethod
    def _files(manifest: ImageManifest) -> builtins.list[ImageFile]:
        files = [manifest.kernel, manifest.rootfs]
        if manifest.initrd is not None:
            files.append(manifest.initrd)
        return files
