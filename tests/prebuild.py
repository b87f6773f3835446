"""Build the guest images the integration tests share, before pytest starts.

``scripts/test.sh`` runs this first, so the first run's network-bound build (kernel
download, debootstrap) is not charged to whichever test happens to need the image first
(pytest-timeout limits each test).  Where the images are already built from the same
recipes, this takes about a second each.  Without root or the tools on a laptop it says
why and leaves the decision to the tests (skip); with CI=true that is a failure.

The images: ``default`` (Debian's kernel), ``docker`` (``default`` plus docker.io, for
``cargobay docker-socket --vm``; built while the kernel compiles) and ``minimal`` (the
same rootfs as ``default`` with the minimal kernel).  The minimal kernel is compiled
(about 10 minutes on two cores) in a thread of its own from the start, while ``default``
downloads Debian's kernel and runs debootstrap, which mostly wait on the network and the
disk; ``minimal`` then finds the kernel in the cache and the base system too.
"""

from __future__ import annotations

import sys
import threading
import time

from cargobay.errors import ImageError
from cargobay.images import BuildEvent, build_image
from cargobay.images.minikernel import build_minimal_kernel
from cargobay.images.recipes import recipe_for
from cargobay.images.tools import ToolRunner
from cargobay.paths import Paths
from tests.support import IN_CI, image_build_paths_for_tests

IMAGES = ("debian", "docker", "default")


def _say(started: float, what: str, text: str) -> None:
    print(f"[{what:<7} {time.monotonic() - started:6.1f}s] {text}", flush=True)


def _kernel_in_background(paths: Paths, started: float) -> threading.Thread:
    """Compile the minimal kernel into the cache in a thread; a failure is printed here,
    and the ``default`` image build reports it again, with the build log."""
    log_path = paths.logs / "minimal-kernel-prebuild.log"

    def run() -> None:
        last = [-1.0]

        def progress(fraction: float, message: str) -> None:
            if fraction - last[0] >= 0.1 or fraction >= 1.0:
                last[0] = fraction
                _say(started, "kernel", f"{fraction:4.0%} {message}")

        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("w") as log:
                build_minimal_kernel(
                    ToolRunner({}, log), paths.cache / "images", on_progress=progress
                )
        except ImageError as err:
            _say(started, "kernel", f"failed: {err}")

    thread = threading.Thread(target=run, name="minimal-kernel", daemon=True)
    thread.start()
    return thread


def main() -> int:
    started = time.monotonic()
    paths = image_build_paths_for_tests()
    kernel_thread = _kernel_in_background(paths, started)
    failed: list[str] = []
    for name in IMAGES:
        if name == "default":
            kernel_thread.join()

        def show(event: BuildEvent, name: str = name) -> None:
            _say(started, name, f"{event.step:<9} {event.fraction:4.0%} {event.message}")

        try:
            manifest = build_image(paths, name, progress=show, recipe=recipe_for(name))
        except ImageError as err:
            print(f"prebuild: the guest image {name} could not be built: {err}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"prebuild: image {name} ready ({manifest.kernel_version})", flush=True)
    kernel_thread.join()
    print(f"prebuild: done in {time.monotonic() - started:.1f}s", flush=True)
    return 1 if failed and IN_CI else 0


if __name__ == "__main__":
    sys.exit(main())
