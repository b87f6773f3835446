"""Image stores for tests: the shared default image, plus variants that fail to boot.

A variant is a real image directory whose files are symbolic links to the default
image's (nothing is copied) and whose manifest adds to the kernel command line.  The
initramfs honours ``init=PATH`` (images/guest/initramfs-init), which gives two real
failures without building another image:

- ``init=/bin/cat``: PID 1 is cat, waiting on the console for ever; the guest agent
  never starts, so the guest never answers;
- ``init=/bin/true``: PID 1 exits at once, the kernel panics and (``panic=-1
  reboot=t``) resets the VM.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.integration.conftest import shared_images_dir

__all__ = ["NEVER_ANSWERS", "PANICS", "image_store_with_variants", "shared_cache_dir"]

NEVER_ANSWERS = "noagent"
PANICS = "noinit"

_VARIANTS = {NEVER_ANSWERS: "init=/bin/cat", PANICS: "init=/bin/true"}


def shared_cache_dir() -> Path:
    """The cache the image build uses (tests/integration/conftest.py).  A test home that
    uses it as its cache shares the KVM probe's verdict (``accel.json``, keyed by host
    kernel, QEMU and guest kernel) with every other test run instead of probing again."""
    configured = os.environ.get("CARGOBAY_TEST_CACHE")
    path = Path(configured).absolute() if configured else shared_images_dir().parent / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_store_with_variants(root: Path, default_dir: Path) -> Path:
    """Make ``root`` an image store holding ``default`` (a link to ``default_dir``) and
    the failing variants; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "default").symlink_to(default_dir, target_is_directory=True)
    manifest = json.loads((default_dir / "manifest.json").read_text())
    for name, extra in _VARIANTS.items():
        directory = root / name
        directory.mkdir()
        for entry in default_dir.iterdir():
            if entry.name != "manifest.json":
                (directory / entry.name).symlink_to(entry)
        variant = dict(manifest, name=name, cmdline=f"{manifest['cmdline']} {extra}")
        (directory / "manifest.json").write_text(json.dumps(variant, indent=2))
    return root
