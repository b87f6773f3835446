"""ImageService against dockerd and Debian's docker-registry on loopback: push, pull with
per-layer progress, pull through a configured mirror, the update check, list, remove,
prune, and the errors of a missing image or a bad reference."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from cargobay.containers.auth import DockerCredentials, RegistryAuth
from cargobay.containers.engine import DockerEngine
from cargobay.containers.images import ImageService
from cargobay.containers.progress import LayerProgress, PullProgress
from cargobay.containers.settings import ContainerSettings, RegistrySettings
from cargobay.errors import (
    EngineError,
    EngineStreamError,
    ImageNotFound,
    InvalidReference,
    RegistryError,
)
from tests.integration.containers.conftest import LocalRegistry

pytestmark = pytest.mark.integration


def _context(base: str, marker: str) -> bytes:
    """A build context whose image differs by ``marker`` (one small extra layer)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("Dockerfile", f"FROM {base}\nCOPY marker /marker\n".encode()),
            ("marker", marker.encode() * 2000),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def _build_and_push(engine: DockerEngine, base: str, ref: str, marker: str) -> str:
    image_id = await engine.build_image(_context(base, marker), tag=ref)
    repo, _, tag = ref.rpartition(":")
    await engine.push_image(repo, tag=tag)
    return image_id


async def test_pull_progress_and_update_check(
    engine: DockerEngine, busybox_image: str, local_registry: LocalRegistry, unique_name: str
) -> None:
    ref = f"{local_registry.host}/cbt/{unique_name}:1"
    service = ImageService(engine)
    first = await _build_and_push(engine, busybox_image, ref, "one")
    await engine.remove_image(ref)
    with pytest.raises(ImageNotFound):
        await engine.inspect_image(ref)

    seen: list[tuple[str, float]] = []

    def on_progress(progress: PullProgress, layer: LayerProgress | None) -> None:
        if layer is not None:
            seen.append((layer.status, progress.fraction))

    result = await service.pull(ref, on_progress)
    assert result.image_id == first
    assert result.digest is not None
    assert result.digest.startswith("sha256:")
    assert not result.up_to_date
    assert any(status == "Pull complete" for status, _ in seen)
    assert seen[-1][1] == 1.0  # every layer finished or already there

    check = await service.check_update(ref)
    assert check.present
    assert check.remote_digest == result.digest
    assert check.update_available is False

    # a changed image pushed under the same tag; the local tag stays on the old image
    second = await _build_and_push(engine, busybox_image, ref, "two")
    assert second != first
    repo, _, tag = ref.rpartition(":")
    await engine.tag_image(first, repo, tag)
    check = await service.check_update(ref)
    assert check.update_available is True
    assert check.remote_digest not in check.local_digests

    again = await service.pull(ref)
    assert again.image_id == second
    assert (await service.check_update(ref)).update_available is False

    await service.remove(ref)
    await engine.remove_image(first)


async def test_pull_through_a_mirror(
    engine: DockerEngine, busybox_image: str, local_registry: LocalRegistry, unique_name: str
) -> None:
    """A Docker Hub name pulled from the configured mirror (Docker Hub is never asked:
    the mirror has it) and tagged back under the name that was asked for."""
    mirrored = f"{local_registry.host}/cbt/{unique_name}:7"
    image_id = await _build_and_push(engine, busybox_image, mirrored, "mirror")
    await engine.remove_image(mirrored)
    settings = ContainerSettings(
        registry=RegistrySettings(mirrors={"docker.io": ["127.0.0.1:1", local_registry.host]})
    )
    service = ImageService(engine, settings)
    events = [event async for event in service.pull_events(f"cbt/{unique_name}:7")]
    done = events[-1]
    assert done["type"] == "done"
    result = done["result"]
    assert result["image_id"] == image_id
    assert result["reference"] == f"cbt/{unique_name}:7"
    assert result["pulled_from"] == mirrored
    assert len(result["mirror_failures"]) == 1  # the dead mirror on port 1, then the live one
    assert "127.0.0.1:1" in result["mirror_failures"][0]
    assert any(event["type"] == "layer" for event in events)
    inspected = await engine.inspect_image(f"cbt/{unique_name}:7")
    assert f"cbt/{unique_name}:7" in inspected["RepoTags"]
    assert mirrored not in inspected["RepoTags"]  # the mirror's tag was dropped
    await service.remove(f"cbt/{unique_name}:7")


async def test_pull_errors(
    engine: DockerEngine, local_registry: LocalRegistry, unique_name: str
) -> None:
    service = ImageService(engine)
    with pytest.raises(InvalidReference, match="lowercase"):
        await service.pull("Bad/Name:1")
    with pytest.raises(InvalidReference, match="invalid tag"):
        await service.pull("busybox:-x")
    missing = f"{local_registry.host}/cbt/{unique_name}:absent"
    with pytest.raises(ImageNotFound, match=unique_name):
        await service.pull(missing)
    with pytest.raises(ImageNotFound, match="not in registry"):
        await service.check_update(missing)
    # nothing listens on port 1: unreachable, with what to do about it
    with pytest.raises(EngineError, match=r"unreachable: check the network.*registry\.mirrors"):
        await service.pull("127.0.0.1:1/cbt/x:1")
    mirrored = ImageService(
        engine,
        ContainerSettings(registry=RegistrySettings(mirrors={"127.0.0.1:1": ["127.0.0.1:2"]})),
    )
    with pytest.raises(EngineError, match=r"mirrors failed too: 127\.0\.0\.1:2: pull"):
        await mirrored.pull("127.0.0.1:1/cbt/x:1")


async def test_list_and_prune(engine: DockerEngine, busybox_image: str, unique_name: str) -> None:
    service = ImageService(engine)
    labels = {"org.cargobay.test": unique_name}
    ref = f"cbt/{unique_name}:1"
    image_id = await engine.build_image(_context(busybox_image, "a"), tag=ref, labels=labels)
    listed = await service.list_images(labels=dict(labels))
    assert [image.id for image in listed] == [image_id]
    assert listed[0].repo_tags == [ref]
    assert listed[0].size > 0
    # rebuilding the tag leaves the first image dangling; prune removes it
    await engine.build_image(_context(busybox_image, "b"), tag=ref, labels=labels)
    pruned = await service.prune(labels=dict(labels))
    assert image_id in pruned["deleted"]
    with pytest.raises(ImageNotFound):
        await engine.inspect_image(image_id)
    await service.remove(ref)
    assert await service.list_images(labels=dict(labels)) == []


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> DockerCredentials:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return DockerCredentials.load({"DOCKER_CONFIG": str(tmp_path)})


async def test_private_registry_with_docker_credentials(
    engine: DockerEngine,
    busybox_image: str,
    private_registry: LocalRegistry,
    unique_name: str,
    tmp_path: Path,
) -> None:
    host = private_registry.host
    assert private_registry.username is not None
    assert private_registry.password is not None
    ref = f"{host}/cbt/{unique_name}:1"
    image_id = await engine.build_image(_context(busybox_image, "private"), tag=ref)
    with pytest.raises(EngineStreamError, match="no basic auth credentials"):
        await engine.push_image(ref.rpartition(":")[0], tag="1")
    good = RegistryAuth(private_registry.username, private_registry.password, server=host)
    await engine.push_image(ref.rpartition(":")[0], tag="1", auth=good.header())
    await engine.remove_image(ref)

    anonymous = ImageService(engine, credentials=DockerCredentials())
    with pytest.raises(EngineError, match="no basic auth credentials"):
        await anonymous.pull(ref)
    with pytest.raises(RegistryError, match=f"needs credentials.*docker login {host}"):
        await anonymous.check_update(ref)

    wrong = ImageService(
        engine, credentials=_docker_config(tmp_path, host, private_registry.username, "wrong")
    )
    with pytest.raises(RegistryError, match="refused the credentials"):
        await wrong.check_update(ref)

    config_dir = tmp_path / "good"
    config_dir.mkdir()
    service = ImageService(
        engine,
        credentials=_docker_config(
            config_dir, host, private_registry.username, private_registry.password
        ),
    )
    result = await service.pull(ref)
    assert result.image_id == image_id
    check = await service.check_update(ref)
    assert check.update_available is False
    assert check.remote_digest == result.digest
    await service.remove(ref)


async def test_an_error_inside_the_pull_stream(
    engine: DockerEngine, busybox_image: str, local_registry: LocalRegistry, unique_name: str
) -> None:
    """The registry has the manifest but lost a layer: the Engine answers 200 and reports
    the failure inside the progress stream; that is an error, not a finished pull."""
    ref = f"{local_registry.host}/cbt/{unique_name}:1"
    await engine.build_image(_context(busybox_image, f"lost-{unique_name}"), tag=ref)
    await engine.push_image(ref.rpartition(":")[0], tag="1")
    await engine.remove_image(ref)
    async with httpx.AsyncClient() as http:
        reply = await http.get(
            f"{local_registry.url}/v2/cbt/{unique_name}/manifests/1",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
    manifest = reply.json()
    top = manifest["layers"][-1]["digest"].removeprefix("sha256:")  # the COPY of the marker
    blobs = local_registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    (blobs / top[:2] / top / "data").unlink()
    with pytest.raises(EngineStreamError, match=f"pull {local_registry.host}/cbt/{unique_name}"):
        await ImageService(engine).pull(ref)
    with pytest.raises(ImageNotFound):
        await engine.inspect_image(ref)
