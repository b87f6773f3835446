"""The root filesystem: the cached base tree plus CargoBay's files, written as ext4.

``assemble`` copies the base tree (``cp -a --reflink=auto``, so the cache is never
changed), installs the kernel's modules under /usr/lib/modules (zstd-compressed, with a
fresh modules.dep, so ``modprobe`` works in the guest for a network card or vsock), writes
the guest files (/sbin/cargobay-init, the agent under /opt/cargobay/lib, /etc/hostname,
an /etc/fstab that mounts nothing: the initramfs sets up /), and compiles the agent's
bytecode with the guest's own python3 inside a chroot, as unchecked hash-based .pyc: the
root is read-only, so the sources never change and the interpreter never needs to stat
them to validate the cache.

``make_ext4`` turns the tree into an image with ``mke2fs -d`` (no loop mount, no root
needed for that step), sized to the content plus a margin; it has no journal because
every VM mounts it read-only.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cargobay.errors import ImageError
from cargobay.images.kernel import KernelTree
from cargobay.images.tools import ToolRunner

__all__ = ["GuestFile", "assemble", "guest_path", "make_ext4", "tree_usage"]

_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
_BLOCK = 4096
_INODE_SIZE = 256


@dataclass(frozen=True, slots=True)
class GuestFile:
    data: bytes
    mode: int = 0o644


def guest_path(tree: Path, path: str) -> Path:
    """Where the guest path ``path`` is inside ``tree``, following the tree's symlinks the
    way the guest would (an absolute link target starts again at the tree's root), so a
    merged-/usr link like /sbin -> usr/sbin never leads outside the tree."""
    parts = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = tree.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ImageError(f"too many symbolic links resolving {path} in {tree}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
            parts = [p for p in target.parts if p != "/"] + parts
            continue
        resolved.append(part)
    return tree.joinpath(*resolved)


def _install_modules(runner: ToolRunner, tree: Path, kernel: KernelTree) -> None:
    release = kernel.package.release
    modules_root = guest_path(tree, "/lib/modules")
    modules_root.mkdir(parents=True, exist_ok=True)
    target = modules_root / release
    runner.run(["cp", "-a", kernel.modules, target], what="copying the kernel modules")
    objects = sorted(str(p) for p in target.rglob("*.ko"))
    if objects:
        runner.run(["zstd", "-q", "--rm", "-T0", "--", *objects], what="compressing the modules")
    runner.run(["depmod", "-b", tree, release], what="depmod in the root image")


def _write_files(tree: Path, files: Mapping[str, GuestFile]) -> None:
    for path, item in sorted(files.items()):
        target = guest_path(tree, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_bytes(item.data)
        target.chmod(item.mode)


def assemble(
    runner: ToolRunner,
    base: Path,
    tree: Path,
    kernel: KernelTree | None,
    files: Mapping[str, GuestFile],
    compile_dirs: tuple[str, ...] = ("/opt/cargobay/lib",),
    on_progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> str:
    """Build the root tree at ``tree`` (which must not exist); returns the guest's Python
    version (``3.11.2``)."""
    tree.mkdir(parents=True)
    on_progress(0.0, "copying the base system")
    runner.run(["cp", "-a", "--reflink=auto", f"{base}/.", tree], what="copying the base system")
    if kernel is not None:  # None: a kernel without modules
        on_progress(0.3, "installing the kernel modules")
        _install_modules(runner, tree, kernel)
    on_progress(0.6, "installing cargobay-init and the guest agent")
    _write_files(tree, files)
    python = guest_path(tree, "/usr/bin/python3")
    if not python.exists():
        raise ImageError("the base system has no /usr/bin/python3; add python3 to the packages")
    on_progress(0.7, "compiling the guest agent")
    runner.run(
        [
            "chroot",
            tree,
            "/usr/bin/python3",
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            *compile_dirs,
        ],
        what="compiling the guest agent with the guest's python3",
        env=_CHROOT_ENV,
    )
    done = runner.run(
        [
            "chroot",
            tree,
            "/usr/bin/python3",
            "-c",
            "import sys; print('%d.%d.%d' % sys.version_info[:3])",
        ],
        what="asking the guest's python3 for its version",
        env=_CHROOT_ENV,
    )
    return done.stdout.strip()


def tree_usage(tree: Path) -> tuple[int, int]:
    """Bytes the tree needs in 4 KiB blocks, and its number of inodes."""
    total = 0
    inodes = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            inodes += 1
            info = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
                total += math.ceil(info.st_size / _BLOCK) * _BLOCK
            elif stat.S_ISLNK(info.st_mode) and info.st_size >= 60:
                total += _BLOCK
    return total, inodes + 1


def make_ext4(runner: ToolRunner, tree: Path, image: Path, label: str) -> int:
    """Write ``tree`` into a new ext4 image at ``image``; returns its size in bytes."""
    content, inodes = tree_usage(tree)
    inodes = int(inodes * 1.25) + 1024
    size = content + inodes * _INODE_SIZE
    size = int(size * 1.10) + 32 * 1024 * 1024
    for _ in range(3):
        size = math.ceil(size / (1024 * 1024)) * 1024 * 1024
        image.unlink(missing_ok=True)
        done = runner.run(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                label,
                "-b",
                str(_BLOCK),
                "-N",
                str(inodes),
                "-m",
                "0",
                "-O",
                "^has_journal",
                "-E",
                "root_owner=0:0",
                "-d",
                tree,
                image,
                f"{size // 1024}k",
            ],
            what="mke2fs",
            check=False,
        )
        if done.returncode == 0:
            return size
        if "space" not in done.stdout.lower() and "allocate" not in done.stdout.lower():
            break
        size = int(size * 1.5)
    raise ImageError(f"mke2fs could not write the root image {image}:\n{done.stdout[-2000:]}")
