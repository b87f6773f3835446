"""The engine endpoints of a real cargobayd through the SDK, and the ``cargobay engine``,
``images`` and ``containers`` command lines, against dockerd and a loopback registry."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from cargobay.containers.engine import DockerEngine
from cargobay.errors import ContainerNotFound, EngineUnavailable, ImageNotFound, InvalidReference
from cargobay.paths import Paths
from cargobay.sdk import CargoBayClient
from cargobay.sdk.containers import AsyncEngineClient, EngineClient
from tests.integration.containers.conftest import CargoBayd, LocalRegistry

pytestmark = pytest.mark.integration


def _client(daemon: CargoBayd) -> CargoBayClient:
    return CargoBayClient(paths=Paths.from_env({"CARGOBAY_HOME": str(daemon.home)}))


def _context(base: str, marker: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("Dockerfile", f"FROM {base}\nCOPY m /m\n".encode()),
            ("m", marker.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_engine_info_and_lists_through_the_sdk(cargobayd: CargoBayd, busybox_image: str) -> None:
    with _client(cargobayd) as client:
        engine = EngineClient(client)
        info = engine.info()
        assert info["url"].startswith("unix://")
        assert info["api_version"]
        assert info["disk_free"] > 0
        assert info["compose"]["builtin"] is True
        images = engine.images(labels=["org.cargobay.test.rootfs"])
        assert any(busybox_image in image["repo_tags"] for image in images)
        with pytest.raises(InvalidReference, match="lowercase"):
            list(engine.pull("Not/Valid"))
        with pytest.raises(ImageNotFound):
            engine.remove_image("cargobay-test/never-there:1")
        with pytest.raises(ContainerNotFound):
            engine.stop("cbt-never-there")


def test_networks_volumes_and_prune_through_the_sdk(
    cargobayd: CargoBayd, docker_engine: str, busybox_image: str, unique_name: str
) -> None:
    import asyncio

    labels = {"org.cargobay.test": unique_name}

    async def setup() -> str:
        async with await DockerEngine.connect(docker_engine) as own:
            await own.create_network(unique_name, labels=labels)
            await own.create_volume(unique_name, labels=labels)
            # an image, then a rebuild of its tag: the first one is left dangling
            first = await own.build_image(
                _context(busybox_image, "a"), tag=f"cbt/{unique_name}:1", labels=labels
            )
            await own.build_image(
                _context(busybox_image, "b"), tag=f"cbt/{unique_name}:1", labels=labels
            )
            return first

    async def cleanup() -> None:
        async with await DockerEngine.connect(docker_engine) as own:
            await own.remove_network(unique_name)
            await own.remove_volume(unique_name)
            await own.remove_image(f"cbt/{unique_name}:1")

    dangling = asyncio.run(setup())
    try:
        with _client(cargobayd) as client:
            api = EngineClient(client)
            label = f"org.cargobay.test={unique_name}"
            [network] = api.networks(labels=[label])
            assert (network["name"], network["driver"]) == (unique_name, "bridge")
            [volume] = api.volumes(labels=[label])
            assert volume["name"] == unique_name
            images = api.images(all=True, labels=[label])
            assert dangling in [image["id"] for image in images]
            pruned = api.prune_images(labels=[label])
            assert dangling in pruned["deleted"]
            assert dangling not in [image["id"] for image in api.images(labels=[label])]
    finally:
        asyncio.run(cleanup())


async def test_pull_logs_stats_through_the_async_sdk(
    cargobayd: CargoBayd,
    engine: DockerEngine,
    busybox_image: str,
    local_registry: LocalRegistry,
    unique_name: str,
) -> None:
    import asyncio

    from cargobay.sdk import AsyncCargoBayClient

    ref = f"{local_registry.host}/cbt/{unique_name}:1"
    image_id = await engine.build_image(_context(busybox_image, unique_name), tag=ref)
    await engine.push_image(ref.rpartition(":")[0], tag="1")
    await engine.remove_image(ref)
    labels = {"org.cargobay.test": unique_name, "com.docker.compose.service": "app"}
    async with AsyncCargoBayClient(
        paths=Paths.from_env({"CARGOBAY_HOME": str(cargobayd.home)})
    ) as client:
        api = AsyncEngineClient(client)
        events = [event async for event in api.pull(ref)]
        assert events[-1]["type"] == "done"
        assert events[-1]["result"]["image_id"] == image_id
        assert any(event["type"] == "layer" for event in events)

        cid = await engine.create_container(
            unique_name,
            {
                "Image": ref,
                "Cmd": ["sh", "-c", "echo hello; echo oops >&2; sleep 30"],
                "Labels": labels,
            },
        )
        try:
            await engine.start_container(cid)
            listed = await api.containers(labels=[f"org.cargobay.test={unique_name}"])
            assert [c["name"] for c in listed] == [unique_name]
            assert listed[0]["service"] == "app"
            lines = []
            async for line in api.logs([unique_name], follow=True):
                lines.append((line["stream"], line["text"]))
                if len(lines) == 2:
                    break
            assert sorted(lines) == [("stderr", "oops"), ("stdout", "hello")]
            samples = [s async for s in api.stats(unique_name, samples=1)]
            assert samples[0]["name"] == unique_name
            assert samples[0]["memory_usage"] > 0
            watch = api.events(labels=[f"org.cargobay.test={unique_name}"])
            assert (await anext(watch))["type"] == "subscribed"
            await api.stop(unique_name, timeout=0)
            assert (await engine.inspect_container(cid))["State"]["Running"] is False
            async with asyncio.timeout(10):
                actions = [(await anext(watch))["event"]["Action"] for _ in range(2)]
            await watch.aclose()  # type: ignore[attr-defined]
            assert "kill" in actions or "die" in actions
        finally:
            await api.remove(unique_name, force=True)
            await api.remove_image(ref)


def test_cli(
    cargobayd: CargoBayd,
    docker_engine: str,
    busybox_image: str,
    local_registry: LocalRegistry,
    unique_name: str,
) -> None:
    import asyncio

    ref = f"{local_registry.host}/cbt/{unique_name}:1"

    async def push(marker: str) -> str:
        async with await DockerEngine.connect(docker_engine) as own:
            image_id = await own.build_image(_context(busybox_image, marker), tag=ref)
            await own.push_image(ref.rpartition(":")[0], tag="1")
            return image_id

    first = asyncio.run(push("one"))
    asyncio.run(_remove(docker_engine, ref))

    info = cargobayd.cli("engine", "info", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["os"] == "linux"
    table = cargobayd.cli("engine", "info")
    assert "API" in table.stdout

    pulled = cargobayd.cli("images", "pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == first
    assert "Pull complete" in pulled.stderr  # plain progress lines: stderr is not a TTY

    current = cargobayd.cli("images", "check-update", ref)
    assert current.returncode == 0, current.stderr
    assert "up to date" in current.stdout

    second = asyncio.run(push("two"))
    asyncio.run(_retag(docker_engine, first, ref))
    stale = cargobayd.cli("images", "check-update", ref, "--json")
    assert stale.returncode == 10, stale.stderr
    assert json.loads(stale.stdout)["update_available"] is True

    listed = cargobayd.cli("images", "ls", "--json")
    assert any(ref in image["repo_tags"] for image in json.loads(listed.stdout))
    table = cargobayd.cli("images", "ls")
    assert f"{local_registry.host}/cbt/{unique_name}" in table.stdout

    bad = cargobayd.cli("images", "pull", "Bad:Ref")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.stderr

    missing = cargobayd.cli("containers", "logs", "cbt-never-there")
    assert missing.returncode == 3
    assert "cbt-never-there" in missing.stderr

    removed = cargobayd.cli("images", "rm", ref)
    assert removed.returncode == 0, removed.stderr
    asyncio.run(_remove(docker_engine, second))


async def _remove(url: str, ref: str) -> None:
    async with await DockerEngine.connect(url) as own:
        await own.remove_image(ref, force=True)


async def _retag(url: str, image: str, ref: str) -> None:
    async with await DockerEngine.connect(url) as own:
        repo, _, tag = ref.rpartition(":")
        await own.tag_image(image, repo, tag)


def test_no_engine_says_how_to_get_one(cargobayd: CargoBayd, tmp_path: Path) -> None:
    """docker_host in containers.toml points at nothing: every engine command fails with
    one line that names the socket and says how to install and start an engine."""
    config = cargobayd.home / "config" / "containers.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'docker_host = "unix://{tmp_path}/docker.sock"\n')
    try:
        for args in (("engine", "info"), ("images", "ls"), ("containers", "ls")):
            run = cargobayd.cli(*args)
            assert run.returncode == 1, run.stderr
            [line] = run.stderr.splitlines()
            assert line.startswith("error: no Docker Engine found")
            assert f"{tmp_path}/docker.sock" in line
            assert "install" in line
        with _client(cargobayd) as client, pytest.raises(EngineUnavailable):
            EngineClient(client).info()
    finally:
        config.unlink()


WIDE = {"COLUMNS": "250"}  # rich cuts tables to 80 columns when stdout is not a terminal


def test_cli_containers(
    cargobayd: CargoBayd, docker_engine: str, busybox_image: str, unique_name: str
) -> None:
    import asyncio

    async def create() -> str:
        async with await DockerEngine.connect(docker_engine) as own:
            cid = await own.create_container(
                unique_name,
                {
                    "Image": busybox_image,
                    "Cmd": ["sh", "-c", "echo first; echo second >&2; echo third; sleep 60"],
                    "Labels": {
                        "org.cargobay.test": unique_name,
                        "com.docker.compose.project": unique_name,
                    },
                },
            )
            await own.start_container(cid)
            return cid

    cid = asyncio.run(create())
    try:
        listed = cargobayd.cli(
            "containers", "ls", "--label", f"org.cargobay.test={unique_name}", env=WIDE
        )
        assert listed.returncode == 0, listed.stderr
        assert unique_name in listed.stdout
        assert "NAME" in listed.stdout.splitlines()[0]

        logs = cargobayd.cli("containers", "logs", unique_name, "--tail", "3", "--search", "d")
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout == "third\n"
        assert logs.stderr == "second\n"  # a container's stderr goes to ours

        stats = cargobayd.cli("containers", "stats", unique_name, "--samples", "1", "--json")
        assert stats.returncode == 0, stats.stderr
        sample = json.loads(stats.stdout)
        assert sample["name"] == unique_name
        assert sample["memory_usage"] > 0
        table = cargobayd.cli(
            "containers", "stats", "--project", unique_name, "--samples", "1", env=WIDE
        )
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split()[:3] == ["NAME", "CPU", "%"]
        assert row.startswith(unique_name)

        stopped = cargobayd.cli("containers", "stop", "-t", "0", unique_name)
        assert stopped.returncode == 0, stopped.stderr
        again = cargobayd.cli(
            "containers", "ls", "--all", "--json", "--label", f"org.cargobay.test={unique_name}"
        )
        [item] = json.loads(again.stdout)
        assert item["state"] == "exited"
    finally:
        removed = cargobayd.cli("containers", "rm", "--force", cid)
    assert removed.returncode == 0, removed.stderr
    gone = cargobayd.cli("containers", "rm", cid)
    assert gone.returncode == 3
    assert gone.stderr.startswith("error: remove container")


def test_cli_pull_through_a_configured_mirror(
    cargobayd: CargoBayd,
    docker_engine: str,
    busybox_image: str,
    local_registry: LocalRegistry,
    unique_name: str,
) -> None:
    """containers.toml names the loopback registry as a Docker Hub mirror: a Hub name is
    pulled from it (Docker Hub is never asked) and tagged under the Hub name."""
    import asyncio

    hub_name = f"cbt/{unique_name}:1"
    on_mirror = f"{local_registry.host}/{hub_name}"

    async def push() -> str:
        async with await DockerEngine.connect(docker_engine) as own:
            image_id = await own.build_image(_context(busybox_image, unique_name), tag=on_mirror)
            await own.push_image(on_mirror.rpartition(":")[0], tag="1")
            await own.remove_image(on_mirror)
            return image_id

    image_id = asyncio.run(push())
    config = cargobayd.home / "config" / "containers.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[registry.mirrors]\n"docker.io" = ["{local_registry.host}"]\n')
    try:
        pulled = cargobayd.cli("images", "pull", hub_name)
        assert pulled.returncode == 0, pulled.stderr
        assert pulled.stdout.strip() == image_id
        assert f"pulled {hub_name} from mirror {on_mirror}" in pulled.stderr
        removed = cargobayd.cli("images", "rm", hub_name)
        assert removed.returncode == 0, removed.stderr
    finally:
        config.unlink()
