"""Shared test helpers. Policy: integration dependencies skip on a laptop and fail in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cargobay.paths import Paths

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip when ``condition`` is false, except in CI (CI=true), where it is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing dependency in CI: {what}", pytrace=False)
    pytest.skip(f"missing dependency: {what}")


def require_binary(name: str, hint: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} not found ({hint})")
    assert path is not None
    return path


REPO = Path(__file__).resolve().parents[1]


def shared_images_dir() -> Path:
    """The image store the integration tests share (CARGOBAY_TEST_IMAGES, default
    ``<repo>/.artifacts/images``, gitignored)."""
    configured = os.environ.get("CARGOBAY_TEST_IMAGES")
    return Path(configured).absolute() if configured else REPO / ".artifacts" / "images"


def image_build_paths_for_tests() -> Paths:
    """The ``Paths`` the shared images are built with: download and debootstrap caches next
    to the images (CARGOBAY_TEST_CACHE), so a second run reuses them."""
    from cargobay.paths import Paths

    images = shared_images_dir()
    configured = os.environ.get("CARGOBAY_TEST_CACHE")
    cache = Path(configured).absolute() if configured else images.parent / "cache"
    home = images.parent / "build-home"
    return Paths(
        data=home / "data",
        state=home / "state",
        cache=cache,
        runtime=home / "run",
        images_override=images,
    )
