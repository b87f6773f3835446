"""Build the guest image the integration tests share, before pytest starts.

``scripts/test.sh`` runs this first, so the first run's network-bound build (kernel
download, debootstrap) is not charged to whichever test happens to need the image first
(pytest-timeout limits each test).  Where the image is already built from the same
recipe, this takes about a second.  Without root or the tools on a laptop it says why
and leaves the decision to the tests (skip); with CI=true that is a failure.
"""

from __future__ import annotations

import sys
import time

from cargobay.errors import ImageError
from cargobay.images import BuildEvent, build_image
from tests.support import IN_CI, image_build_paths_for_tests


def main() -> int:
    started = time.monotonic()

    def show(event: BuildEvent) -> None:
        print(
            f"[image {time.monotonic() - started:6.1f}s] {event.step:<9} "
            f"{event.fraction:4.0%} {event.message}",
            flush=True,
        )

    try:
        manifest = build_image(image_build_paths_for_tests(), "default", progress=show)
    except ImageError as err:
        print(f"prebuild: the default guest image could not be built: {err}", file=sys.stderr)
        return 1 if IN_CI else 0
    print(
        f"prebuild: image default ready ({manifest.kernel_version}) in "
        f"{time.monotonic() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
