"""``GET /v1/apps/{name}/logs?follow=true`` for a local-mode instance, through the real
daemon app served by uvicorn on loopback: the PTY history, then the output as it comes,
ending when the process ends; a reader that goes away is forgotten and the process keeps
running."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cargobay.apps.service import AppService
from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store
from tests.integration.apps.test_local_mode import repo_url  # noqa: F401 - fixture
from tests.unit.cargobay.daemon.test_api import NoAgents, no_hypervisor

WAITS_FOR_GO = (
    "import os, sys, time\n"
    "print('before', flush=True)\n"
    "while not os.path.exists('go'): time.sleep(0.05)\n"
    "print('\\x1b[1mafter\\x1b[0m 1', flush=True)\n"
    "print('after 2', flush=True)\n"
    "sys.stdout.write('no newline'); sys.stdout.flush()\n"
)
SLEEPS = "import time\nprint('hello', flush=True)\ntime.sleep(120)\n"


class Daemon:
    def __init__(self, url: str, apps: AppService) -> None:
        self.url = url
        self.apps = apps


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    paths.ensure()
    store = Store.open(paths.db)
    images = DaemonImages(paths)
    state = DaemonState(
        paths=paths,
        service=MachineService(paths, store, no_hypervisor, images, NoAgents()),
        images=images,
    )
    app = create_app(state, recover=False)
    apps = AppService(store, paths.data / "apps", engine_url="unix:///nonexistent")
    app.state.apps = apps
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not serving.done(), serving
        await asyncio.sleep(0.02)
    try:
        yield Daemon(f"http://127.0.0.1:{port}", apps)
    finally:
        server.should_exit = True
        await serving
        await apps.close()
        store.close()
        sock.close()


async def _deployed_and_started(client: httpx.AsyncClient, name: str, url: str, code: str) -> None:
    body = {
        "name": name,
        "deploy_mode": "local",
        "repo_url": url,
        "local_commands": {"core": ["{python}", "-c", code]},
    }
    created = await client.post("/v1/apps", json=body)
    assert created.status_code == 201, created.text
    async with client.stream("POST", f"/v1/apps/{name}/deploy", params={"follow": "true"}) as r:
        events = [json.loads(line) async for line in r.aiter_lines() if line]
    assert events[-1]["type"] == "done", events
    started = await client.post(f"/v1/apps/{name}/start")
    assert started.status_code == 200, started.text


async def _next_log(lines: AsyncIterator[str]) -> dict[str, Any]:
    async for line in lines:
        if line:
            event: dict[str, Any] = json.loads(line)
            return event
    raise AssertionError("the stream ended")


async def test_follow_streams_new_output_until_the_process_ends(
    daemon: Daemon,
    repo_url: str,  # noqa: F811
) -> None:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=60) as client:
        await _deployed_and_started(client, "follow1", repo_url, WAITS_FOR_GO)
        checkout = Path(daemon.apps.get("follow1").paths["app"])
        params = {"follow": "true"}
        async with client.stream("GET", "/v1/apps/follow1/logs", params=params) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            first = await _next_log(lines)
            assert first == {"type": "log", "service": "core", "stream": "pty", "line": "before"}
            # only now does the process print more: it must reach this open stream
            await asyncio.to_thread((checkout / "go").touch)
            rest = [json.loads(line) async for line in lines if line]
    assert [e["line"] for e in rest] == ["\x1b[1mafter\x1b[0m 1", "after 2", "no newline"]
    assert {e["service"] for e in rest} == {"core"}
    assert daemon.apps.local._followers == {}
    [proc] = daemon.apps.local.processes(daemon.apps.get("follow1"))
    assert proc["state"] == "exited"
    assert proc["exit_code"] == 0


async def test_a_reader_that_goes_away_is_forgotten(
    daemon: Daemon,
    repo_url: str,  # noqa: F811
) -> None:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=60) as client:
        await _deployed_and_started(client, "follow2", repo_url, SLEEPS)
        params = {"follow": "true"}
        async with client.stream("GET", "/v1/apps/follow2/logs", params=params) as response:
            assert (await _next_log(response.aiter_lines()))["line"] == "hello"
            assert len(daemon.apps.local._followers[daemon.apps.get("follow2").id]) == 1
        # the client hung up: the daemon drops its reader, the process runs on
        for _ in range(200):
            if not daemon.apps.local._followers:
                break
            await asyncio.sleep(0.05)
        assert daemon.apps.local._followers == {}
        [proc] = daemon.apps.local.processes(daemon.apps.get("follow2"))
        assert proc["state"] == "running"
        # without follow the history comes back and the stream ends at once
        plain = await client.get("/v1/apps/follow2/logs")
        assert [json.loads(line)["line"] for line in plain.text.splitlines()] == ["hello"]
        stopped = await client.post("/v1/apps/follow2/stop")
        assert stopped.status_code == 200, stopped.text
