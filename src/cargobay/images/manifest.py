"""A built guest image on disk, and its manifest.

An image is a directory ``<data>/images/<name>/`` holding

    vmlinuz        the kernel
    initrd.img     an initramfs that loads the virtio modules and mounts the root
    rootfs.ext4    the root filesystem (ext4, shared read-only by every VM)
    manifest.json  this record

and is complete only once ``manifest.json`` exists: builders write everything else
first (into a temporary directory renamed into place), so a crash never leaves a
half-built image that looks usable.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from cargobay.errors import ImageError

__all__ = ["MANIFEST", "ImageFile", "ImageManifest", "load_manifest"]

MANIFEST = "manifest.json"


class ImageFile(BaseModel):
    path: str
    """Relative to the image directory."""
    size: int
    sha256: str


class ImageManifest(BaseModel):
    name: str
    format_version: int = 1
    kernel_version: str
    kernel_package: str
    """The Debian package the kernel came from, with its version (for the minimal kernel:
    linux-source-6.1's version and the config fragment's hash)."""
    kernel_kind: str = "debian"
    """``debian`` (Debian's packaged kernel) or ``minimal`` (built from linux-source-6.1)."""
    kernel_config_sha256: str | None = None
    """For the minimal kernel: SHA-256 of ``kconfig/minimal.config`` it was built with."""
    debian_suite: str = "bookworm"
    arch: str = "amd64"
    packages: list[str] = Field(default_factory=list)
    """Extra Debian packages in the rootfs."""
    cmdline: str
    """Kernel command line the image expects (console, root handling, init)."""
    kernel: ImageFile
    initrd: ImageFile | None
    rootfs: ImageFile
    agent_version: str
    python_version: str = ""
    """The guest's python3 (``3.11.2``)."""
    initramfs_modules: list[str] = Field(default_factory=list)
    """Kernel modules the initramfs loads, in load order."""
    built_at: datetime
    build_seconds: float
    recipe_hash: str
    """Hash of everything that went into the build; a different hash means rebuild."""

    def path_of(self, directory: Path, f: ImageFile) -> Path:
        return directory / f.path


def load_manifest(directory: Path) -> ImageManifest:
    path = directory / MANIFEST
    try:
        return ImageManifest.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise ImageError(
            f"no image at {directory} (missing {MANIFEST}); build it with `cargobay image build`"
        ) from err
    except (ValueError, OSError) as err:
        raise ImageError(
            f"the image manifest {path} is unreadable ({err}); "
            "remove the image with `cargobay image rm` and build it again"
        ) from err
