"""cargobay.apps.backup with a real dockerd: files, data directories and a named volume go
into one tar.gz and come back under a new instance name.  ``docker_engine`` and
``busybox_image`` come from this folder's conftest (the containers tests' fixtures)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargobay.apps.backup import create_backup, read_manifest, restore_backup
from cargobay.containers.engine import DockerEngine
from cargobay.errors import BackupError, Conflict, ContainerError, InvalidInput


@pytest.fixture
async def engine(docker_engine: str) -> AsyncIterator[DockerEngine]:
    async with await DockerEngine.connect(docker_engine) as connected:
        yield connected


async def _run(engine: DockerEngine, image: str, volume: str, script: str) -> int:
    cid = await engine.create_container(
        None,
        {
            "Image": image,
            "Cmd": ["sh", "-c", script],
            "HostConfig": {"Binds": [f"{volume}:/v"]},
        },
    )
    try:
        await engine.start_container(cid)
        return int((await engine.wait_container(cid))["StatusCode"])
    finally:
        await engine.remove_container(cid, force=True)


@pytest.fixture
async def volumes(engine: DockerEngine) -> AsyncIterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        with contextlib.suppress(ContainerError):
            await engine.remove_volume(name, force=True)


def _names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def _instance(root: Path) -> None:
    (root / "config").mkdir(parents=True)
    (root / "config" / "bot_config.toml").write_text('[bot]\nnickname = "麦麦"\n')
    (root / "data" / "logs").mkdir(parents=True)
    (root / "data" / "logs" / "bot.log").write_text("started\n")
    (root / "not-backed-up.txt").write_text("x")


async def test_backup_and_restore_under_a_new_name(
    engine: DockerEngine, busybox_image: str, volumes: list[str], tmp_path: Path
) -> None:
    tag = os.urandom(3).hex()
    old, new = f"cbt{tag}a", f"cbt{tag}b"
    volume = f"{old}_mongo"
    await engine.create_volume(volume, labels={"app": "maibot"})
    volumes += [volume, f"{new}_mongo"]
    assert (
        await _run(
            engine,
            busybox_image,
            volume,
            "mkdir -p /v/db && echo mongo-data > /v/db/file && chmod 600 /v/db/file",
        )
        == 0
    )
    root = tmp_path / old
    _instance(root)
    archive = tmp_path / "backup.tar.gz"
    manifest = await create_backup(
        archive,
        instance=old,
        root=root,
        paths=["config/bot_config.toml", "data"],
        volumes=[volume],
        engine=engine,
        helper_image=busybox_image,
    )
    assert [v.name for v in manifest.volumes] == [volume]
    assert read_manifest(archive) == manifest
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "files/config/bot_config.toml" in names
    assert "files/data/logs/bot.log" in names
    assert "files/not-backed-up.txt" not in names
    assert f"volumes/{volume}.tar" in names

    restored_root = tmp_path / new
    result = await restore_backup(
        archive, new_name=new, root=restored_root, engine=engine, helper_image=busybox_image
    )
    assert result.volumes == {volume: f"{new}_mongo"}
    assert (restored_root / "config/bot_config.toml").read_text() == '[bot]\nnickname = "麦麦"\n'
    assert (restored_root / "data/logs/bot.log").read_text() == "started\n"
    info = await engine.inspect_volume(f"{new}_mongo")
    assert info["Labels"]["app"] == "maibot"
    check = 'test "$(cat /v/db/file)" = mongo-data && test "$(stat -c %a /v/db/file)" = 600'
    assert await _run(engine, busybox_image, f"{new}_mongo", check) == 0
    assert _names(tmp_path) == ["backup.tar.gz", old, new]

    with pytest.raises(Conflict, match="already exists"):
        await restore_backup(
            archive,
            new_name=new,
            root=tmp_path / "other",
            engine=engine,
            helper_image=busybox_image,
        )
    assert not (tmp_path / "other").exists()


async def test_missing_volume_leaves_no_archive(
    engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    root = tmp_path / "inst"
    _instance(root)
    archive = tmp_path / "b.tar.gz"
    with pytest.raises(BackupError, match="does not exist"):
        await create_backup(
            archive,
            instance="inst",
            root=root,
            paths=["config"],
            volumes=[f"cbt-missing-{os.urandom(3).hex()}"],
            engine=engine,
            helper_image=busybox_image,
        )
    assert _names(tmp_path) == ["inst"]


async def test_files_only_backup_and_bad_input(tmp_path: Path) -> None:
    root = tmp_path / "inst"
    _instance(root)
    archive = tmp_path / "b.tar.gz"
    await create_backup(archive, instance="inst", root=root, paths=["config"])
    result = await restore_backup(archive, new_name="inst2", root=tmp_path / "inst2")
    assert (result.root / "config/bot_config.toml").exists()
    with pytest.raises(BackupError, match="already exists"):
        await create_backup(archive, instance="inst", root=root, paths=["config"])
    with pytest.raises(InvalidInput, match="relative"):
        await create_backup(tmp_path / "c.tgz", instance="inst", root=root, paths=["../etc"])
    with pytest.raises(InvalidInput, match="needs a Docker engine"):
        await create_backup(
            tmp_path / "c.tgz", instance="inst", root=root, paths=["config"], volumes=["v"]
        )
    with pytest.raises(InvalidInput, match="instance name"):
        await restore_backup(archive, new_name="../x", root=tmp_path / "x")


async def test_hostile_backup_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    manifest = {
        "format": 1,
        "instance": "a",
        "created": "2026-01-01T00:00:00Z",
        "paths": ["config"],
        "volumes": [],
    }
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (
            ("manifest.json", json.dumps(manifest).encode()),
            ("files/config/x", b"ok"),
            ("../../escape", b"evil"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupError, match="outside the target"):
        await restore_backup(archive, new_name="b", root=tmp_path / "b")
    assert _names(tmp_path) == ["evil.tar.gz"]
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"junk")
    with pytest.raises(BackupError, match="not a CargoBay instance backup"):
        await restore_backup(junk, new_name="b", root=tmp_path / "b")


async def test_links_out_and_fifos_are_left_out_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "inst"
    _instance(root)
    data = root / "data"
    (data / "passwd").symlink_to("/etc/passwd")
    (data / "up").symlink_to("../../..")
    (data / "latest.log").symlink_to("logs/bot.log")
    os.mkfifo(data / "pipe")
    archive = tmp_path / "b.tar.gz"
    manifest = await create_backup(archive, instance="inst", root=root, paths=["data"])
    assert sorted(manifest.skipped) == ["data/passwd", "data/pipe", "data/up"]
    assert read_manifest(archive).skipped == manifest.skipped
    result = await restore_backup(archive, new_name="inst2", root=tmp_path / "inst2")
    assert (result.root / "data/latest.log").read_text() == "started\n"
    assert not (result.root / "data/passwd").is_symlink()
