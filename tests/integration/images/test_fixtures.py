"""The shared fixtures other integration tests build on."""

from __future__ import annotations

import os
from pathlib import Path

from cargobay.images import ImageManifest
from cargobay.paths import Paths
from tests.support import shared_images_dir


def test_test_paths_is_a_short_home_sharing_the_images(test_paths: Paths) -> None:
    home = Path(os.environ["CARGOBAY_HOME"])
    assert home.parent == Path("/tmp")
    assert home.name.startswith("cb-")
    assert home.is_dir()
    assert os.environ["CARGOBAY_IMAGES"] == str(shared_images_dir())
    assert test_paths == Paths.from_env()
    assert test_paths.images == shared_images_dir()
    assert test_paths.data == home / "data"
    # room for the longest socket name under a 12-character machine id
    assert len(str(test_paths.machine_run_dir("0123456789ab") / "agent.sock")) < 107


def test_default_image_lives_in_the_shared_store(
    default_image: tuple[Path, ImageManifest],
) -> None:
    directory, manifest = default_image
    assert directory == shared_images_dir() / "default"
    assert manifest.name == "default"
