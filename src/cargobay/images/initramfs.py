"""The initramfs: busybox-static, a few kernel modules and our /init, as a gzipped newc cpio.

Layout (everything the kernel needs before the root disk is mounted):

    /init                      guest/initramfs-init (busybox sh)
    /bin/busybox               from the base tree's busybox-static
    /bin/<applet>              a symlink to busybox for every applet it lists
    /lib/modules/<name>.ko     the modules to load, flat, uncompressed (busybox insmod)
    /etc/cargobay-modules      their names, one a line, in load order
    /dev/console, /dev/null    device nodes, so /init has a console before devtmpfs
    /proc /sys /cb /newroot    mount points

The archive is written by ``cargobay.images.cpio`` straight from bytes (device nodes are
header fields, so no root and no staging directory are needed), with mtime 0: the same
inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path

from cargobay.errors import ImageError
from cargobay.images.cpio import NewcWriter
from cargobay.images.tools import ToolRunner

__all__ = ["busybox_applets", "make_initramfs", "write_initramfs"]

MODULE_LIST = "etc/cargobay-modules"
_MOUNT_POINTS = ("proc", "sys", "cb", "newroot")


def busybox_applets(runner: ToolRunner, busybox: Path) -> list[str]:
    """The applets a busybox binary provides (it is static, so the host can run it)."""
    done = runner.run([busybox, "--list"], what="listing the busybox applets")
    applets = sorted({line.strip() for line in done.stdout.splitlines() if line.strip()})
    for needed in ("sh", "mount", "insmod", "findfs", "switch_root"):
        if needed not in applets:
            raise ImageError(f"{busybox} has no {needed} applet; the initramfs needs it")
    return [applet for applet in applets if "/" not in applet and applet != "busybox"]


def write_initramfs(
    init: bytes,
    busybox: bytes,
    applets: Sequence[str],
    modules: Sequence[tuple[str, bytes]],
) -> bytes:
    """The uncompressed newc archive.  ``modules``: ``(name, contents)`` in load order."""
    out = io.BytesIO()
    cpio = NewcWriter(out)
    for directory in ("bin", "dev", "etc", "lib/modules", *_MOUNT_POINTS):
        cpio.add_directory(directory)
    cpio.add_char_device("dev/console", 5, 1, 0o600)
    cpio.add_char_device("dev/null", 1, 3, 0o666)
    cpio.add_file("init", init, 0o755)
    cpio.add_file("bin/busybox", busybox, 0o755)
    for applet in applets:
        cpio.add_symlink(f"bin/{applet}", "busybox")
    for name, data in modules:
        cpio.add_file(f"lib/modules/{name}.ko", data, 0o644)
    cpio.add_file(MODULE_LIST, "".join(f"{name}\n" for name, _ in modules).encode())
    cpio.close()
    return out.getvalue()


def make_initramfs(
    runner: ToolRunner,
    target: Path,
    *,
    init: bytes,
    busybox: Path,
    modules: Sequence[tuple[str, Path]],
) -> None:
    """Write the gzipped initramfs to ``target``."""
    applets = busybox_applets(runner, busybox)
    archive = write_initramfs(
        init,
        busybox.read_bytes(),
        applets,
        [(name, path.read_bytes()) for name, path in modules],
    )
    target.write_bytes(gzip.compress(archive, compresslevel=9, mtime=0))
