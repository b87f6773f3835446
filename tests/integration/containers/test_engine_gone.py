"""An engine that goes away mid-stream: a Unix-socket relay between DockerEngine and the
real dockerd is cut while logs are followed and while stats stream; the caller gets
EngineUnavailable naming what it was doing, not a silent end of stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargobay.containers.engine import DockerEngine
from cargobay.containers.logs import follow_logs
from cargobay.containers.stats import stream_stats
from cargobay.errors import EngineUnavailable
from tests.integration.containers.conftest import CargoBayd

pytestmark = pytest.mark.integration


class Relay:
    """Forwards connections on ``path`` to dockerd's socket; :meth:`cut` drops them all."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._handle, str(self.path))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        self.writers += [writer, up_writer]
        both = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self.tasks.update(both)
        await asyncio.gather(*both, return_exceptions=True)

    async def cut(self) -> None:
        for writer in self.writers:
            transport = writer.transport
            transport.abort()
        for task in self.tasks:
            task.cancel()

    async def close(self) -> None:
        await self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def relayed(docker_engine: str, tmp_path: Path) -> AsyncIterator[tuple[Relay, DockerEngine]]:
    relay = Relay(tmp_path / "relay.sock", docker_engine.removeprefix("unix://"))
    await relay.start()
    engine = await DockerEngine.connect(f"unix://{relay.path}")
    try:
        yield relay, engine
    finally:
        await engine.close()
        await relay.close()


async def test_logs_follow_when_the_engine_goes_away(
    relayed: tuple[Relay, DockerEngine], engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    relay, through_relay = relayed
    cid = await engine.create_container(
        unique_name,
        {"Image": busybox_image, "Cmd": ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]},
    )
    try:
        await engine.start_container(cid)
        received = 0

        async def read() -> None:
            nonlocal received
            async with asyncio.timeout(20):
                async for _line in follow_logs(through_relay, [cid], follow=True):
                    received += 1
                    if received == 3:
                        await relay.cut()

        with pytest.raises(EngineUnavailable, match=f"logs of {cid}.*went away"):
            await read()
        assert received >= 3
    finally:
        await engine.remove_container(cid, force=True)


async def test_stats_stream_when_the_engine_goes_away(
    relayed: tuple[Relay, DockerEngine], engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    relay, through_relay = relayed
    cid = await engine.create_container(
        unique_name, {"Image": busybox_image, "Cmd": ["sleep", "30"]}
    )
    try:
        await engine.start_container(cid)
        got = 0

        async def read() -> None:
            nonlocal got
            async with asyncio.timeout(20):
                async for _sample in stream_stats(through_relay, unique_name):
                    got += 1
                    await relay.cut()

        with pytest.raises(EngineUnavailable, match=f"stats of {unique_name}"):
            await read()
        assert got == 1
    finally:
        await engine.remove_container(cid, force=True)


async def test_through_the_daemon_the_stream_ends_with_the_error(
    cargobayd: CargoBayd,
    docker_engine: str,
    engine: DockerEngine,
    busybox_image: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """cargobayd follows logs through the relay; when it is cut, the NDJSON stream ends
    with an error event and the SDK raises EngineUnavailable."""
    from cargobay.paths import Paths
    from cargobay.sdk import AsyncCargoBayClient
    from cargobay.sdk.containers import AsyncEngineClient

    relay = Relay(tmp_path / "d.sock", docker_engine.removeprefix("unix://"))
    await relay.start()
    config = cargobayd.home / "config" / "containers.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'docker_host = "unix://{relay.path}"\n')
    cid = await engine.create_container(
        unique_name,
        {"Image": busybox_image, "Cmd": ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]},
    )
    received = 0

    async def follow() -> None:
        nonlocal received
        paths = Paths.from_env({"CARGOBAY_HOME": str(cargobayd.home)})
        async with AsyncCargoBayClient(paths=paths) as client, asyncio.timeout(20):
            async for _line in AsyncEngineClient(client).logs([unique_name], follow=True):
                received += 1
                if received == 3:
                    await relay.cut()

    try:
        await engine.start_container(cid)
        with pytest.raises(EngineUnavailable, match="went away in the middle"):
            await follow()
        assert received >= 3
    finally:
        config.unlink()
        await relay.close()
        await engine.remove_container(cid, force=True)
