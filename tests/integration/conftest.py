"""Fixtures shared by every integration test: the guest image and short CargoBay homes.

``default_image`` builds the default guest image once per test session (or reuses the one
from a previous run when its recipe hash still matches) into CARGOBAY_TEST_IMAGES, by
default ``<repo>/.artifacts/images`` (gitignored); its download and debootstrap caches go
next to it (CARGOBAY_TEST_CACHE, default ``<repo>/.artifacts/cache``), so a second run
builds nothing and a run after an agent change only re-assembles the root image.
A first build needs root and the network (about a minute); a missing QEMU, debootstrap,
mke2fs or dpkg-deb skips on a laptop and fails under CI=true.

``test_paths`` gives a test its own short CARGOBAY_HOME (``/tmp/cb-XXXXXX``: Unix socket
paths must stay under 107 bytes) whose image store is the shared one
(CARGOBAY_IMAGES), and sets both variables for the test so that in-process code
(``Paths.from_env()``) and child processes (a daemon, the CLI) agree.  The home is removed
after a passing test and kept (its path printed) after a failing one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import (
    image_build_paths_for_tests,
    require,
    require_binary,
    shared_images_dir,
)

if TYPE_CHECKING:
    from cargobay.images import ImageManifest
    from cargobay.paths import Paths
    from tests.integration.libvirt_env import LibvirtEnv


@pytest.fixture(scope="session")
def image_build_paths() -> Paths:
    """The ``Paths`` the shared images are built with (cache next to the images)."""
    return image_build_paths_for_tests()


@pytest.fixture(scope="session")
def default_image() -> tuple[Path, ImageManifest]:
    """``(image directory, manifest)`` of the default guest image (the minimal kernel),
    built if needed."""
    return shared_image("default")


@pytest.fixture(scope="session")
def debian_image() -> tuple[Path, ImageManifest]:
    """The default image's root filesystem with Debian's cloud kernel and its modules
    (the default image has the minimal kernel, which ``tests.prebuild`` compiles)."""
    return shared_image("debian")


@pytest.fixture(scope="session")
def docker_image() -> tuple[Path, ImageManifest]:
    """The default image plus Debian's docker.io: its guest starts dockerd
    (``cargobay docker-socket --vm``; ``tests.prebuild`` builds it once per run)."""
    return shared_image("docker")


def shared_image(name: str) -> tuple[Path, ImageManifest]:
    """``(image directory, manifest)`` of a shared test image built from the recipe
    ``recipe_for(name)``, built if needed."""
    require_binary("qemu-system-x86_64", "Debian: apt-get install qemu-system-x86")
    require_binary("dpkg-deb", "Debian: dpkg")
    from cargobay.errors import ImageError
    from cargobay.images import BuildEvent, ImageStore, build_image
    from cargobay.images.recipes import recipe_for
    from cargobay.images.tools import find_tool

    for tool, package in (("debootstrap", "debootstrap"), ("mke2fs", "e2fsprogs")):
        # find_tool also looks in /usr/sbin, which a non-root PATH may lack
        require(
            find_tool(tool) is not None, f"{tool} not found (Debian: apt-get install {package})"
        )

    paths = image_build_paths_for_tests()
    started = time.monotonic()

    def show(event: BuildEvent) -> None:
        elapsed = time.monotonic() - started
        print(f"[image {elapsed:6.1f}s] {event.step:<9} {event.fraction:4.0%} {event.message}")

    try:
        build_image(paths, name, progress=show, recipe=recipe_for(name))
    except ImageError as err:
        if os.geteuid() != 0 and "needs root" in str(err):
            require(False, f"root, to build the guest image {name} ({err})")
        if "linux-source-6.1" in str(err):
            require(False, f"the minimal kernel's source and toolchain ({err})")
        pytest.fail(f"building the guest image {name} failed: {err}", pytrace=False)
    store = ImageStore(paths.images)
    return store.path(name), store.get(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def test_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Paths]:
    """A fresh short CARGOBAY_HOME sharing the test image store; env set for the test."""
    from cargobay.paths import Paths

    home = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    monkeypatch.setenv("CARGOBAY_HOME", str(home))
    monkeypatch.setenv("CARGOBAY_IMAGES", str(shared_images_dir()))
    try:
        yield Paths.from_env()
    finally:
        if request.node.stash.get(_FAILED, False):
            print(f"kept the CargoBay home of the failed test: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def libvirt_env() -> Iterator[LibvirtEnv]:
    """libvirtd (also on qemu+tcp://127.0.0.1) and an sshd on loopback for qemu+ssh://,
    started for the session when not running; see ``tests.integration.libvirt_env``."""
    from tests.integration.libvirt_env import LibvirtEnv

    env = LibvirtEnv.start()
    try:
        yield env
    finally:
        env.stop()
