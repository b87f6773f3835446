"""The seed's other two transfer methods (``DataTransferMethod``): a block-device image and a
temporary volume, attached at a machine's next start and mounted in the guest.

    data NAME image HOST_DIR GUEST_PATH   an ext4 image built on the host from HOST_DIR
                                          (``mkfs.ext4 -d``), kept in the machine's
                                          directory, attached read-only at every start
                                          and mounted at GUEST_PATH
    data NAME volume SIZE GUEST_PATH      an empty scratch disk (sparse ext4), made at
                                          every start, mounted read-write at GUEST_PATH;
                                          its file is unlinked once the guest runs, so it
                                          is gone when QEMU exits (stop, crash, kill)
    data NAME detach GUEST_PATH           drop an attachment (the image file too)

Both ride on the share plumbing (``hypervisors.qemu_storage.ShareDevice`` with
``kind="block"``: a ``-drive``/``virtio-blk`` pair whose serial is the tag); the guest finds
the disk by its serial in ``/sys/block/vd*/serial`` and mounts it through the agent.  The
guest image is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from cargobay.errors import Conflict, HypervisorError, InvalidInput
from cargobay.machines.files import find_tool

if TYPE_CHECKING:
    from cargobay.machines.models import VMInstance

__all__ = [
    "Attachment",
    "build_image",
    "image_size_mb",
    "mount_script",
    "prepare_volumes",
]

_MIB = 1024 * 1024
MAX_ATTACHMENTS = 8


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["image", "volume"]
    guest_path: str
    image_path: str | None = None
    """kind image: the ext4 image on the host."""
    size_mb: int | None = None
    """kind volume: the scratch disk's size."""


def image_size_mb(tree: Path) -> int:
    """Room for ``tree`` in ext4: its bytes in 4 KiB blocks plus inodes, +25 %, at least
    8 MiB."""
    total = 0
    count = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            count += 1
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += -(-st.st_size // 4096) * 4096
        del dirpath
    need = total + count * 4096 + 4 * _MIB
    return max(8, -(-int(need * 1.25) // _MIB))


async def _run(argv: list[str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        text = out.decode(errors="replace").strip()
        raise HypervisorError(f"{what}: {text.splitlines()[-1] if text else proc.returncode}")


def _sparse(path: Path, size_mb: int) -> None:
    """A new sparse file of ``size_mb`` MiB at ``path`` (an old one is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with path.open("xb") as f:
        f.truncate(size_mb * _MIB)


def _sized_tree(tree: Path) -> int:
    if not tree.is_dir():
        raise InvalidInput(f"bad image source {tree}: not a directory")
    return image_size_mb(tree)


async def build_image(tree: Path, image: Path) -> int:
    """``image`` as an ext4 file system holding ``tree`` (``mkfs.ext4 -d``); its size in
    MiB."""
    size = await asyncio.to_thread(_sized_tree, tree)
    mkfs = find_tool("mke2fs")
    await asyncio.to_thread(_sparse, image, size)
    try:
        argv = [mkfs, "-t", "ext4", "-q", "-F", "-m", "0", "-L", "cbimage", "-d", str(tree)]
        await _run([*argv, str(image)], f"could not build an image from {tree}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(image)
        raise
    return size


async def make_volume(path: Path, size_mb: int) -> None:
    """A fresh sparse ext4 scratch disk (an old one is replaced)."""
    await asyncio.to_thread(_sparse, path, size_mb)
    argv = [find_tool("mke2fs"), "-t", "ext4", "-q", "-F", "-m", "0", "-L", "cbvolume"]
    await _run([*argv, "-E", "nodiscard", str(path)], f"could not format volume {path}")


def volume_path(state_dir: Path, index: int) -> Path:
    return state_dir / f"volume{index}.ext4"


async def prepare_volumes(attachments: tuple[Attachment, ...], state_dir: Path) -> None:
    for i, a in enumerate(attachments):
        if a.kind == "volume":
            await make_volume(volume_path(state_dir, i), a.size_mb or 64)


def serial(index: int) -> str:
    return f"cbatt{index}"


def mount_script(index: int, attachment: Attachment) -> list[str]:
    """The guest command mounting attachment ``index`` (found by its serial)."""
    ro = "-o ro " if attachment.kind == "image" else ""
    path = attachment.guest_path
    script = (
        f'mkdir -p "$1" && for d in /sys/block/vd*; do '
        f'if [ "$(cat $d/serial 2>/dev/null)" = {serial(index)} ]; then '
        f'exec mount -t ext4 {ro}/dev/${{d##*/}} "$1"; fi; done; '
        f"echo 'no disk with serial {serial(index)}' >&2; exit 1"
    )
    return ["sh", "-c", script, "mount", path]


def add_attachment(vm: VMInstance, attachment: Attachment) -> VMInstance:
    from cargobay.machines.shares import check_guest_dir

    check_guest_dir(attachment.guest_path)
    current: tuple[Attachment, ...] = vm.config.attachments
    taken = {a.guest_path.rstrip("/") for a in current}
    taken |= {s.guest_path.rstrip("/") for s in vm.config.shares}
    if attachment.guest_path.rstrip("/") in taken:
        raise Conflict(f"machine {vm.name!r} already has something at {attachment.guest_path}")
    if len(current) >= MAX_ATTACHMENTS:
        raise Conflict(f"machine {vm.name!r} has {MAX_ATTACHMENTS} attachments already")
    config = vm.config.model_copy(update={"attachments": (*current, attachment)})
    return vm.model_copy(update={"config": config})


def remove_attachment(vm: VMInstance, guest_path: str) -> tuple[VMInstance, Attachment]:
    current: tuple[Attachment, ...] = vm.config.attachments
    match = [a for a in current if a.guest_path.rstrip("/") == guest_path.rstrip("/")]
    if not match:
        raise InvalidInput(f"machine {vm.name!r} has no image or volume at {guest_path}")
    rest = tuple(a for a in current if a is not match[0])
    config = vm.config.model_copy(update={"attachments": rest})
    return vm.model_copy(update={"config": config}), match[0]


def describe(attachments: Any) -> list[str]:
    return [
        f"{a.kind} {a.guest_path}"
        + (f" ({a.size_mb}MB)" if a.kind == "volume" else f" ({a.image_path})")
        for a in attachments
    ]


async def attach_to(
    service: Any, name: str, kind: Literal["image", "volume"], guest_path: str,
    host_path: str | None = None, size_mb: int | None = None,
) -> VMInstance:  # fmt: skip
    """Add an image (built now from ``host_path``) or a volume to machine ``name``; it is
    attached at the machine's next start.  ``service`` is the ``MachineService``."""
    import uuid

    async with service._operation(name, "getting an attachment"):
        vm = service.store.get_machine(name)
        if kind == "image":
            if not host_path or not os.path.isabs(host_path):
                raise InvalidInput("an image needs an absolute host folder")
            image = service.machine_dir(vm) / "attachments" / f"{uuid.uuid4().hex[:12]}.ext4"
            attachment = Attachment(kind="image", guest_path=guest_path, image_path=str(image))
            add_attachment(vm, attachment)  # checked before the build
            await build_image(Path(host_path), image)
        else:
            if size_mb is None or not 1 <= size_mb <= 1024 * 1024:
                raise InvalidInput("a volume needs a size from 1MB to 1TB")
            attachment = Attachment(kind="volume", guest_path=guest_path, size_mb=size_mb)
        saved: VMInstance = service.store.save_machine(add_attachment(vm, attachment))
        return saved


async def detach_from(service: Any, name: str, guest_path: str) -> VMInstance:
    """Drop the attachment at ``guest_path`` (an image's file too); from the next start."""
    async with service._operation(name, "losing an attachment"):
        vm, gone = remove_attachment(service.store.get_machine(name), guest_path)
        saved: VMInstance = service.store.save_machine(vm)
        if gone.image_path:
            with contextlib.suppress(OSError):
                os.unlink(gone.image_path)
        return saved
