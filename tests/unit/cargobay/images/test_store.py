"""ImageStore on hand-made image directories: list, get, remove, install, verify."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cargobay.errors import ImageError, InvalidInput, NotFound
from cargobay.images import ImageManifest, ImageStore, validate_name
from cargobay.images.manifest import MANIFEST
from cargobay.images.store import file_record


def make_image(directory: Path, name: str, rootfs: bytes = b"root" * 100) -> ImageManifest:
    directory.mkdir(parents=True)
    (directory / "vmlinuz").write_bytes(b"kernel")
    (directory / "initrd.img").write_bytes(b"initrd")
    (directory / "rootfs.ext4").write_bytes(rootfs)
    manifest = ImageManifest(
        name=name,
        kernel_version="6.1.0-56-cloud-amd64",
        kernel_package="linux-image-6.1.0-56-cloud-amd64 6.1.192-2",
        cmdline="console=ttyS0",
        kernel=file_record(directory, "vmlinuz"),
        initrd=file_record(directory, "initrd.img"),
        rootfs=file_record(directory, "rootfs.ext4"),
        agent_version="0.1.0",
        built_at=datetime(2026, 1, 1, tzinfo=UTC),
        build_seconds=1.0,
        recipe_hash="0" * 64,
    )
    (directory / MANIFEST).write_text(manifest.model_dump_json())
    return manifest


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def test_empty_or_missing_store_lists_nothing(store: ImageStore) -> None:
    assert store.list() == []
    store.root.mkdir()
    assert store.list() == []


def test_list_shows_complete_images_only(store: ImageStore) -> None:
    make_image(store.root / "default", "default")
    make_image(store.root / "alpha", "alpha")
    (store.root / "half-built").mkdir()
    (store.root / "half-built" / "rootfs.ext4").write_bytes(b"x")
    make_image(store.root / ".build-default-x", "default")
    (store.root / "broken").mkdir()
    (store.root / "broken" / MANIFEST).write_text("{not json")
    assert [m.name for m in store.list()] == ["alpha", "default"]
    with pytest.raises(ImageError, match="unreadable"):
        store.get("broken")


def test_get_and_missing_image(store: ImageStore) -> None:
    made = make_image(store.root / "default", "default")
    assert store.get("default") == made
    assert store.exists("default")
    with pytest.raises(NotFound, match="cargobay image build other"):
        store.get("other")
    assert store.find("other") is None


def test_remove(store: ImageStore) -> None:
    make_image(store.root / "default", "default")
    store.remove("default")
    assert not (store.root / "default").exists()
    assert list(store.root.iterdir()) == []
    with pytest.raises(NotFound):
        store.remove("default")


def test_install_replaces_the_old_image(store: ImageStore) -> None:
    make_image(store.root / "default", "default", rootfs=b"old")
    built = store.root / ".build-default-1"
    new = make_image(built, "default", rootfs=b"new!")
    store.install("default", built)
    assert store.get("default") == new
    assert (store.root / "default" / "rootfs.ext4").read_bytes() == b"new!"
    assert [p.name for p in store.root.iterdir()] == ["default"]


def test_install_refuses_a_build_without_manifest(store: ImageStore) -> None:
    (store.root / ".build-x").mkdir(parents=True)
    with pytest.raises(ImageError, match="not a finished image"):
        store.install("x", store.root / ".build-x")


def test_complete_and_verify_catch_damaged_files(store: ImageStore) -> None:
    make_image(store.root / "default", "default")
    assert store.complete("default")
    assert store.verify("default") == []
    rootfs = store.root / "default" / "rootfs.ext4"
    rootfs.write_bytes(rootfs.read_bytes()[:-1] + b"X")  # same size, other bytes
    assert store.complete("default")
    assert store.verify("default") == ["rootfs.ext4 has a different sha256 than the manifest says"]
    rootfs.write_bytes(b"short")
    assert not store.complete("default")
    (store.root / "default" / "vmlinuz").unlink()
    problems = store.verify("default")
    assert "vmlinuz is missing" in problems
    assert any(p.startswith("rootfs.ext4 has 5 bytes") for p in problems)


def test_clean_stale_removes_leftovers_only(store: ImageStore) -> None:
    make_image(store.root / "default", "default")
    for leftover in (".build-default-a", ".remove-x-b", ".replace-y-c"):
        (store.root / leftover).mkdir()
    (store.root / ".build.lock").write_text("")
    store.clean_stale()
    assert sorted(p.name for p in store.root.iterdir()) == [".build.lock", "default"]


def test_disk_usage(store: ImageStore) -> None:
    make_image(store.root / "default", "default")
    assert store.disk_usage("default") > 0
    with pytest.raises(NotFound):
        store.disk_usage("nope")


@pytest.mark.parametrize("name", ["default", "a", "my-image.2", "x_y", "9" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Default", "-x", ".hidden", "a/b", "..", "x" * 64, "a b"])
def test_invalid_names(name: str, store: ImageStore) -> None:
    with pytest.raises(InvalidInput, match="invalid image name"):
        validate_name(name)
    with pytest.raises(InvalidInput):
        store.path(name)
