"""QEMU arguments for a machine's storage: the data drive's cache strategy and host
folders shared into the guest.  Pure functions, unit-tested on the argv.

Cache strategy (the config's ``defaults.cache_strategy``, a machine's ``cache_strategy``)
-> the data drive's ``-drive`` options (the read-only root drive is never written and
keeps QEMU's default):

    strategy       cache=         aio=     what it means
    writeback      writeback      threads  host page cache; guest flushes reach the disk
    writethrough   writethrough   threads  every write is flushed before it completes
    none           none           native   O_DIRECT (bypasses the host cache; the state
                                           directory must support O_DIRECT: not tmpfs)
    directsync     directsync     native   O_DIRECT and a flush per write
    unsafe         unsafe         threads  flushes ignored: fastest, loses data on a host crash

``discard=unmap,detect-zeroes=unmap`` stay whatever the strategy: the sparse file stays
sparse.

Shares: each ``ShareDevice`` becomes a virtio-blk disk (``kind="block"``: the block
images and scratch volumes of ``machines.attachments``, the serial is the tag), a
virtio-9p device (``-fsdev local`` with
``security_model=none``: guest writes are plain host files owned by QEMU's user) or, with
``kind="virtiofs"``, a ``vhost-user-fs`` device talking to a virtiofsd on ``socket``
(virtiofs needs the guest RAM in a shared memory backend: the caller sets
``QemuOptions.memory_file`` with ``memory_share``).  The guest mounts each by its tag.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from cargobay.errors import InvalidInput

__all__ = [
    "CACHE_OPTIONS",
    "ShareDevice",
    "data_drive_options",
    "decode_shares",
    "encode_shares",
    "share_args",
]

CACHE_OPTIONS: dict[str, tuple[str, str]] = {
    "writeback": ("writeback", "threads"),
    "writethrough": ("writethrough", "threads"),
    "none": ("none", "native"),
    "directsync": ("directsync", "native"),
    "unsafe": ("unsafe", "threads"),
}


def _opt(value: object) -> str:
    return str(value).replace(",", ",,")


def data_drive_options(strategy: str) -> str:
    """The ``cache=...,aio=...`` part of the data drive for ``strategy``."""
    try:
        cache, aio = CACHE_OPTIONS[strategy]
    except KeyError:
        raise InvalidInput(
            f"bad cache strategy {strategy!r}: use one of {', '.join(CACHE_OPTIONS)}"
        ) from None
    return f"cache={cache},aio={aio}"


@dataclass(frozen=True, slots=True)
class ShareDevice:
    """One host folder as a guest device (``tag`` is what the guest mounts)."""

    tag: str
    host_path: str
    readonly: bool = False
    kind: Literal["9p", "virtiofs", "block"] = "9p"
    socket: str | None = None
    """virtiofs: virtiofsd's vhost-user socket."""


def share_args(shares: tuple[ShareDevice, ...], bus: str) -> list[str]:
    """``-fsdev``/``-chardev`` + ``-device`` arguments for ``shares`` (``bus``: ``device``
    on microvm, ``pci`` on q35)."""
    argv: list[str] = []
    if bus == "device" and any(s.kind == "virtiofs" for s in shares):
        # microvm's virtio-mmio devices are legacy (v1) by default; libvhost-user (virtiofsd)
        # refuses legacy devices.  Modern mmio is what the guest kernel prefers anyway.
        argv += ["-global", "virtio-mmio.force-legacy=false"]
    for i, share in enumerate(shares):
        if len(share.tag) > 31 or not share.tag.isascii():
            raise InvalidInput(f"bad share tag {share.tag!r}: at most 31 ASCII characters")
        if share.kind == "block":  # an image or scratch volume: virtio-blk, serial = tag
            ro = ",readonly=on" if share.readonly else ",discard=unmap"
            argv += [
                "-drive",
                f"id=blk{i},file={_opt(share.host_path)},format=raw,if=none{ro}",
                "-device",
                f"virtio-blk-{bus},drive=blk{i},serial={_opt(share.tag)}",
            ]
        elif share.kind == "9p":
            ro = ",readonly=on" if share.readonly else ""
            argv += [
                "-fsdev",
                f"local,id=fs{i},path={_opt(share.host_path)},security_model=none{ro}",
                "-device",
                f"virtio-9p-{bus},fsdev=fs{i},mount_tag={_opt(share.tag)}",
            ]
        else:
            if not share.socket:
                raise InvalidInput(f"virtiofs share {share.tag!r} has no virtiofsd socket")
            argv += [
                "-chardev",
                f"socket,id=vfs{i},path={_opt(share.socket)}",
                "-device",
                f"vhost-user-fs-{bus},chardev=vfs{i},tag={_opt(share.tag)}",
            ]
    return argv


def encode_shares(shares: tuple[ShareDevice, ...]) -> str:
    """``shares`` as the text ``VMSpec.extra["shares"]`` carries."""
    return json.dumps([asdict(s) for s in shares])


def decode_shares(text: str) -> tuple[ShareDevice, ...]:
    """The inverse of ``encode_shares`` (``""``: no shares)."""
    if not text:
        return ()
    try:
        return tuple(ShareDevice(**item) for item in json.loads(text))
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"bad shares in the VM spec: {err}") from err
