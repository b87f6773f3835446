"""Logs (demultiplexed, tail, since, timestamps, search, per service, follow, TTY) and
stats (CPU, memory, network) of real containers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cargobay.containers.engine import DockerEngine
from cargobay.containers.logs import LogLine, follow_logs
from cargobay.containers.resources import resolve_containers
from cargobay.containers.stats import compute, stream_stats, stream_stats_many
from cargobay.errors import ContainerNotFound, InvalidInput

pytestmark = pytest.mark.integration

SCRIPT = (
    "echo one; echo two >&2; printf 'no newline at the end'; echo; "
    "head -c 70000 /dev/zero | tr '\\0' x; echo; echo 'needle in it'; printf tail-partial"
)


async def _run(engine: DockerEngine, image: str, name: str, cmd: str, **extra: object) -> str:
    config = {"Image": image, "Cmd": ["sh", "-c", cmd], **extra}
    cid = await engine.create_container(name, config)
    await engine.start_container(cid)
    return cid


async def _collect(lines: AsyncIterator[LogLine]) -> list[LogLine]:
    return [line async for line in lines]


async def test_logs_demultiplexed(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    cid = await _run(engine, busybox_image, unique_name, SCRIPT)
    try:
        await engine.wait_container(cid)
        lines = await _collect(follow_logs(engine, [unique_name]))
        texts = [(line.stream, line.text) for line in lines]
        assert ("stdout", "one") in texts
        assert ("stderr", "two") in texts
        assert ("stdout", "no newline at the end") in texts
        assert ("stdout", "x" * 70000) in texts  # one line across several frames
        assert texts[-1] == ("stdout", "tail-partial")  # the unterminated last line
        assert {line.container for line in lines} == {unique_name}

        tail = await _collect(follow_logs(engine, [cid], tail=2))
        assert [line.text for line in tail] == ["needle in it", "tail-partial"]

        found = await _collect(follow_logs(engine, [cid], search="NEEDLE", ignore_case=True))
        assert [line.text for line in found] == ["needle in it"]
        found = await _collect(follow_logs(engine, [cid], search=r"^t\w+$", regex=True))
        assert [line.text for line in found] == ["two"]

        stamped = await _collect(follow_logs(engine, [cid], timestamps=True, tail=1))
        assert stamped[0].text == "tail-partial"
        assert stamped[0].timestamp is not None
        assert stamped[0].timestamp.startswith(time.strftime("%Y-", time.gmtime()))

        future = await _collect(follow_logs(engine, [cid], since=time.time() + 3600))
        assert future == []
        recent = await _collect(follow_logs(engine, [cid], since="10m"))
        assert len(recent) == len(lines)
    finally:
        await engine.remove_container(cid, force=True)


async def test_logs_by_service_and_follow(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    labels = {"com.docker.compose.project": unique_name, "com.docker.compose.service": "web"}
    cmd = "i=0; while true; do i=$((i+1)); echo tick $i $HOSTNAME; sleep 0.1; done"
    first = await _run(engine, busybox_image, f"{unique_name}-1", cmd, Labels=labels)
    second = await _run(engine, busybox_image, f"{unique_name}-2", cmd, Labels=labels)
    other = await _run(
        engine,
        busybox_image,
        f"{unique_name}-db",
        "echo db; sleep 30",
        Labels={**labels, "com.docker.compose.service": "db"},
    )
    try:
        seen: dict[str, int] = {}
        lines = follow_logs(engine, service="web", project=unique_name, follow=True)
        async with asyncio.timeout(20):
            async for line in lines:
                assert line.service == "web"
                assert line.text.startswith("tick")
                seen[line.container] = seen.get(line.container, 0) + 1
                if len(seen) == 2 and min(seen.values()) >= 3:
                    break
        await lines.aclose()  # type: ignore[attr-defined]
        assert set(seen) == {f"{unique_name}-1", f"{unique_name}-2"}
        with pytest.raises(ContainerNotFound, match="service 'nope'"):
            await _collect(follow_logs(engine, service="nope", project=unique_name))
    finally:
        for cid in (first, second, other):
            await engine.remove_container(cid, force=True)


async def test_logs_of_a_tty_container(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    cid = await _run(engine, busybox_image, unique_name, "echo with a tty", Tty=True)
    try:
        await engine.wait_container(cid)
        lines = await _collect(follow_logs(engine, [cid]))
        assert [line.text for line in lines] == ["with a tty"]
    finally:
        await engine.remove_container(cid, force=True)


async def test_stats(engine: DockerEngine, busybox_image: str, unique_name: str) -> None:
    cmd = (
        "head -c 16000000 /dev/urandom > /tmp/cache-me; "
        "ping -c 3 -i 0.2 $(ip route | awk '/default/ {print $3}'); while :; do :; done"
    )
    cid = await _run(engine, busybox_image, unique_name, cmd)
    try:
        # samples come once a second; the first with both a CPU delta and the pings done
        # ends the loop (the busy loop keeps one CPU at 100 %)
        last = None
        raw: dict[str, Any] = {}
        async with asyncio.timeout(20):
            async for raw in engine.container_stats(cid):
                last = compute(raw)
                if last.net_tx > 0 and last.cpu_percent > 30:
                    break
        assert last is not None
        assert last.name == unique_name
        assert last.cpu_percent > 30
        assert last.online_cpus >= 1
        assert 0 < last.memory_usage < last.memory_limit
        assert last.net_rx > 0
        assert last.net_tx > 0
        assert last.pids >= 1
        # the 16 MB file sits in the page cache: counted in usage, not in the result
        assert last.memory_usage < raw["memory_stats"]["usage"]
        [computed] = [s async for s in stream_stats(engine, cid, stream=False)]
        assert computed.name == unique_name
    finally:
        await engine.remove_container(cid, force=True)


async def test_stats_of_a_project(
    engine: DockerEngine, busybox_image: str, unique_name: str
) -> None:
    labels = {"com.docker.compose.project": unique_name, "com.docker.compose.service": "web"}
    ids = [
        await _run(engine, busybox_image, f"{unique_name}-{i}", "sleep 30", Labels=labels)
        for i in (1, 2)
    ]
    stopped = await engine.create_container(
        f"{unique_name}-3", {"Image": busybox_image, "Cmd": ["true"], "Labels": labels}
    )
    try:
        running = await resolve_containers(engine, [], project=unique_name, running=True)
        assert running == ids  # sorted by name; the created-only one is left out
        assert stopped in await resolve_containers(engine, [], service="web", project=unique_name)
        samples = [s async for s in stream_stats_many(engine, running, samples=2)]
        assert sorted(s.name for s in samples) == sorted(
            [f"{unique_name}-1", f"{unique_name}-2"] * 2
        )
        with pytest.raises(ContainerNotFound, match="no running containers of project"):
            await resolve_containers(engine, [], project=f"{unique_name}-none", running=True)
        with pytest.raises(InvalidInput, match="name a container"):
            await resolve_containers(engine, [])
    finally:
        for cid in (*ids, stopped):
            await engine.remove_container(cid, force=True)
