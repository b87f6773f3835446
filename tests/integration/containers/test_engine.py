"""DockerEngine against a real dockerd: system calls, container lifecycle, networks,
volumes, images (tag, build, import, remove) and how errors come back."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from cargobay.containers.engine import DockerEngine
from cargobay.errors import (
    ContainerConflict,
    ContainerNotFound,
    EngineError,
    EngineStreamError,
    EngineUnavailable,
    ImageNotFound,
    InvalidReference,
    NetworkNotFound,
    VolumeNotFound,
)

pytestmark = pytest.mark.integration


async def test_system_calls(engine: DockerEngine) -> None:
    assert await engine.ping() == "OK"
    version = await engine.version()
    assert version["ApiVersion"]
    assert version["Os"] == "linux"
    info = await engine.info()
    assert info["DockerRootDir"].startswith("/")
    assert await engine.api_version() == version["ApiVersion"]


async def test_connect_to_nothing_is_engine_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "no-engine.sock"
    with socket.socket(socket.AF_UNIX) as sock:  # a socket file nobody listens on
        sock.bind(str(path))
    with pytest.raises(EngineUnavailable, match="cannot reach"):
        await DockerEngine.connect(f"unix://{path}", timeout=3)


async def test_container_lifecycle(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    config = {
        "Image": busybox_image,
        "Cmd": ["sh", "-c", "trap 'exit 3' TERM; echo started; while true; do sleep 0.1; done"],
        "Labels": {"org.cargobay.test": unique_name},
        "StopTimeout": 5,
    }
    cid = await engine.create_container(unique_name, config)
    try:
        with pytest.raises(ContainerConflict, match=unique_name):
            await engine.create_container(unique_name, config)
        listed = await engine.list_containers(all=True, labels={"org.cargobay.test": unique_name})
        assert [item["Id"] for item in listed] == [cid]
        assert await engine.list_containers(labels={"org.cargobay.test": unique_name}) == []

        await engine.start_container(unique_name)
        state = (await engine.inspect_container(cid))["State"]
        assert state["Running"] is True
        running = await engine.list_containers(labels={"org.cargobay.test": unique_name})
        assert [item["Id"] for item in running] == [cid]

        await engine.stop_container(cid, timeout=5)
        state = (await engine.inspect_container(cid))["State"]
        assert state["Running"] is False
        assert state["ExitCode"] == 3  # the TERM trap ran: a graceful stop

        await engine.restart_container(cid, timeout=1)
        assert (await engine.inspect_container(cid))["State"]["Running"] is True
        await engine.kill_container(cid)
        waited = await engine.wait_container(cid)
        assert waited["StatusCode"] == 137
    finally:
        await engine.remove_container(cid, force=True)
    with pytest.raises(ContainerNotFound, match=cid[:12]):
        await engine.inspect_container(cid)


async def test_exec_and_wait(engine: DockerEngine, busybox_image: str, unique_name: str) -> None:
    cid = await engine.create_container(
        unique_name, {"Image": busybox_image, "Cmd": ["sleep", "30"]}
    )
    try:
        await engine.start_container(cid)
        code, output = await engine.exec_run(cid, ["sh", "-c", "echo out; echo err >&2; exit 4"])
        assert code == 4
        assert b"out\n" in output
        assert b"err\n" in output
    finally:
        await engine.remove_container(cid, force=True)


async def test_missing_image_is_image_not_found(engine: DockerEngine, unique_name: str) -> None:
    with pytest.raises(ImageNotFound, match=f"create container {unique_name}"):
        await engine.create_container(unique_name, {"Image": "cargobay-test/absent:nope"})
    with pytest.raises(ImageNotFound):
        await engine.inspect_image("cargobay-test/absent:nope")


async def test_bad_reference_is_invalid_reference(engine: DockerEngine) -> None:
    with pytest.raises(InvalidReference, match="invalid reference format"):
        await engine.pull_image("UPPER/Case:tag")


async def test_networks(engine: DockerEngine, busybox_image: str, unique_name: str) -> None:
    labels = {"org.cargobay.test": unique_name}
    nid = await engine.create_network(unique_name, labels=labels)
    cid = await engine.create_container(
        f"{unique_name}-c", {"Image": busybox_image, "Cmd": ["sleep", "30"]}
    )
    try:
        listed = await engine.list_networks(labels=labels)
        assert [item["Id"] for item in listed] == [nid]
        await engine.start_container(cid)
        await engine.connect_network(unique_name, cid, aliases=["db-alias"])
        attached = (await engine.inspect_container(cid))["NetworkSettings"]["Networks"]
        assert "db-alias" in (attached[unique_name]["Aliases"] or [])
        inspected = await engine.inspect_network(nid)
        assert cid in inspected["Containers"]
        await engine.disconnect_network(unique_name, cid)
        assert cid not in ((await engine.inspect_network(nid)).get("Containers") or {})
    finally:
        await engine.remove_container(cid, force=True)
        await engine.remove_network(nid)
    with pytest.raises(NetworkNotFound, match=unique_name):
        await engine.inspect_network(unique_name)


async def test_volumes(engine: DockerEngine, unique_name: str) -> None:
    labels = {"org.cargobay.test": unique_name}
    created = await engine.create_volume(unique_name, labels=labels)
    assert created["Name"] == unique_name
    try:
        assert [v["Name"] for v in await engine.list_volumes(labels=labels)] == [unique_name]
        assert (await engine.inspect_volume(unique_name))["Labels"] == labels
    finally:
        await engine.remove_volume(unique_name)
    with pytest.raises(VolumeNotFound, match=unique_name):
        await engine.inspect_volume(unique_name)
    assert await engine.list_volumes(labels=labels) == []


async def test_build_tag_and_remove(
    engine: DockerEngine, busybox_image: str, unique_name: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nARG GREETING=none\nCOPY hello.txt /hello.txt\n"
        "RUN echo $GREETING > /greeting\n"
    )
    (tmp_path / "hello.txt").write_text("hello\n")
    (tmp_path / "secret.txt").write_text("must not be sent\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    tag = f"cargobay-test/{unique_name}:1"
    lines: list[dict[str, object]] = []
    image_id = await engine.build_image(
        tmp_path,
        tag=tag,
        buildargs={"GREETING": "hi"},
        labels={"org.cargobay.test": unique_name},
        on_progress=lines.append,
    )
    try:
        assert image_id.startswith("sha256:")
        assert any("Step" in str(line.get("stream", "")) for line in lines)
        inspected = await engine.inspect_image(tag)
        assert inspected["Id"] == image_id
        assert inspected["Config"]["Labels"]["org.cargobay.test"] == unique_name
        await engine.tag_image(tag, f"cargobay-test/{unique_name}", "2")
        listed = await engine.list_images(labels={"org.cargobay.test": unique_name})
        assert len(listed) == 1
        assert set(listed[0]["RepoTags"]) == {tag, f"cargobay-test/{unique_name}:2"}

        cid = await engine.create_container(
            None, {"Image": tag, "Cmd": ["sh", "-c", "cat /greeting /hello.txt; ls /secret.txt"]}
        )
        try:
            await engine.start_container(cid)
            assert (await engine.wait_container(cid))["StatusCode"] == 1  # no secret.txt
            async with engine.container_logs_stream(cid) as chunks:
                raw = b"".join([chunk async for chunk in chunks])
            assert b"hi\n" in raw
            assert b"hello\n" in raw
        finally:
            await engine.remove_container(cid, force=True)
    finally:
        await engine.remove_image(f"cargobay-test/{unique_name}:2")
        removed = await engine.remove_image(tag)
    assert any("Deleted" in item for item in removed)
    with pytest.raises(ImageNotFound, match=unique_name):
        await engine.inspect_image(tag)


async def test_build_failure_inside_the_stream(
    engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN exit 7\n")
    with pytest.raises(EngineStreamError, match="returned a non-zero code: 7"):
        await engine.build_image(tmp_path, tag="cargobay-test/broken:1")


async def test_events_filtered_by_label(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    labels = {"org.cargobay.test": unique_name}
    cid = None
    async with asyncio.timeout(10), engine.events_stream(labels=labels) as events:
        cid = await engine.create_container(  # after subscribing: it must be seen
            unique_name, {"Image": busybox_image, "Cmd": ["true"], "Labels": labels}
        )
        try:
            event = await anext(events)
        finally:
            await engine.remove_container(cid, force=True)
    assert event["Type"] == "container"
    assert event["Action"] == "create"
    assert event["Actor"]["ID"] == cid
    assert event["Actor"]["Attributes"]["org.cargobay.test"] == unique_name


async def test_request_json_for_unmapped_endpoints(engine: DockerEngine) -> None:
    usage = await engine.request_json("GET", "/system/df")
    assert "Images" in usage
    assert isinstance(usage["LayersSize"], int)
    with pytest.raises(ContainerNotFound, match="GET /containers/cbt-none/top"):
        await engine.request_json("GET", "containers/cbt-none/top", kind="container")
    with pytest.raises(EngineError, match="answered 404"):
        await engine.request_json("GET", "no/such/endpoint")


async def test_build_output_of_a_long_line_arrives_whole(
    engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    """One build step prints 300 KB without a newline (the Engine sends it in 32 KiB
    messages): every byte arrives through the progress stream."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN head -c 300000 /dev/zero | tr '\\0' a\n"
    )
    lines: list[dict[str, object]] = []
    image_id = await engine.build_image(
        tmp_path, tag="cargobay-test/long-line:1", on_progress=lines.append, nocache=True
    )
    try:
        printed = "".join(str(line.get("stream", "")) for line in lines)
        assert printed.count("a" * 1000) >= 300
    finally:
        await engine.remove_image(image_id, force=True)
