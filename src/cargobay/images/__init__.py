"""cargobay.images: build, cache, list and remove guest images.

An image is a directory ``<Paths.images>/<name>/`` with ``vmlinuz``, ``initrd.img``,
``rootfs.ext4`` and ``manifest.json`` (see ``manifest``), made from Debian packages only:

- the kernel and its modules from Debian's ``linux-image-cloud-amd64`` (``apt-get
  download`` + ``dpkg-deb -x``, nothing installed on the host);
- the root filesystem from ``debootstrap --variant=minbase`` plus python3,
  qemu-guest-agent, kmod and busybox-static, with /sbin/cargobay-init and the guest agent
  (virga + cargobay.guest, precompiled by the guest's python3) under /opt/cargobay/lib,
  written as ext4 by ``mke2fs -d`` (label ``cbroot``, no loop mounts);
- an initramfs (busybox-static, the virtio and overlay modules, ``guest/initramfs-init``)
  written by our own newc cpio writer, that mounts the root read-only and an overlay on
  the VM's data disk (label ``cbdata``) or a tmpfs, then starts /sbin/cargobay-init.

The guest side of the boot contract is in ``guest/initramfs-init`` and
``guest/cargobay-init`` (kernel command line: ``cargobay.name=NAME``, ``cargobay.debug=1``,
``cargobay.selftest=1``, ``init=PATH``).

API (what the daemon's image endpoints call)::

    from cargobay.images import ImageStore, build_image

    manifest = build_image(paths, "default", progress=on_event)   # blocking; use a thread
    store = ImageStore(paths.images)
    store.list()              # -> [ImageManifest], complete images only, by name
    store.get("default")      # -> ImageManifest, NotFound if absent
    store.path("default")     # -> the image directory
    store.remove("default")   # NotFound if absent; atomic
    store.verify("default")   # -> list of problems (checksums), empty if none

``build_image`` returns at once (no root, no network) when the image's recipe hash
matches; otherwise it needs root and raises ``ImageError`` saying what is missing (a host
tool and its Debian package, root, the network or a mirror).  ``progress`` receives
``BuildEvent(step, fraction, message)`` for the steps in ``BUILD_STEPS``, in order; the
fraction is that step's.  Downloads (kernel .deb, debootstrap's .debs), the unpacked
kernel and the debootstrap base tree are cached under ``<Paths.cache>/images``, so a
rebuild after changing only the agent or an init script takes seconds, not a minute.
"""

from cargobay.images.build import (
    BUILD_STEPS,
    DEFAULT_RECIPE,
    BuildEvent,
    ImageRecipe,
    ProgressCallback,
    build_image,
)
from cargobay.images.manifest import ImageFile, ImageManifest, load_manifest
from cargobay.images.store import ImageStore, validate_name

__all__ = [
    "BUILD_STEPS",
    "DEFAULT_RECIPE",
    "BuildEvent",
    "ImageFile",
    "ImageManifest",
    "ImageRecipe",
    "ImageStore",
    "ProgressCallback",
    "build_image",
    "load_manifest",
    "validate_name",
]
