"""An instance's saved status around a deploy, through the daemon API (the real app served
by uvicorn on loopback): ``deploying`` while the deploy runs, ``error`` with the message
when a first deploy fails, and the previous status back (the message kept) when a
redeploy fails while the old processes still run."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx

from tests.integration.apps.test_local_logs_follow import (  # noqa: F401 - fixtures
    SLEEPS,
    Daemon,
    _deployed_and_started,
    daemon,
)
from tests.integration.apps.test_local_mode import repo_url  # noqa: F401 - fixture


async def _settled(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = (await client.get(f"/v1/apps/{name}")).json()
        if body["status"] != "deploying":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} still deploying")


async def test_deploying_then_error_with_the_message(daemon: Daemon) -> None:  # noqa: F811
    # a loopback "git server" that takes the connection and never answers: the deploy
    # hangs in its clone step until the socket is closed
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    async with httpx.AsyncClient(base_url=daemon.url, timeout=60) as client:
        body = {"name": "status1", "deploy_mode": "local", "repo_url": f"http://127.0.0.1:{port}/"}
        assert (await client.post("/v1/apps", json=body)).status_code == 201
        assert (await client.get("/v1/apps/status1")).json()["status"] == "created"
        task = (await client.post("/v1/apps/status1/deploy")).json()
        shown = (await client.get("/v1/apps/status1")).json()
        assert (shown["status"], shown["status_message"]) == ("deploying", None)
        await asyncio.sleep(0.3)
        assert (await client.get("/v1/apps/status1")).json()["status"] == "deploying"
        silent.close()  # the clone fails now
        failed = await _settled(client, "status1")
        assert failed["status"] == "error"
        final = (await client.get(f"/v1/apps/status1/tasks/{task['id']}")).json()
        assert final["state"] == "failed"
        assert failed["status_message"] == final["error"]
        assert str(port) in failed["status_message"]
        status = (await client.get("/v1/apps/status1/status")).json()
        assert status["instance"]["status"] == "error"


async def test_a_failed_redeploy_keeps_the_running_status(
    daemon: Daemon,  # noqa: F811
    repo_url: str,  # noqa: F811
) -> None:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=60) as client:
        await _deployed_and_started(client, "status2", repo_url, SLEEPS)
        assert (await client.get("/v1/apps/status2")).json()["status"] == "running"
        patched = await client.patch("/v1/apps/status2", json={"branch": "no-such-branch"})
        assert patched.status_code == 200, patched.text
        async with client.stream("POST", "/v1/apps/status2/deploy", params={"follow": "true"}) as r:
            events = [json.loads(line) async for line in r.aiter_lines() if line]
        assert events[-1]["type"] == "error", events
        back = await _settled(client, "status2")
        assert back["status"] == "running"
        assert back["status_message"] == events[-1]["message"]
        [proc] = (await client.get("/v1/apps/status2/status")).json()["processes"]
        assert proc["state"] == "running"
        # the log endpoint filters by process
        core = await client.get("/v1/apps/status2/logs", params={"service": "core"})
        assert [json.loads(line)["line"] for line in core.text.splitlines()] == ["hello"]
        other = await client.get("/v1/apps/status2/logs", params={"service": "adapter"})
        assert other.text.strip() == ""
        # a deploy that succeeds clears the message and keeps the processes' status
        await client.patch("/v1/apps/status2", json={"branch": "master"})
        async with client.stream("POST", "/v1/apps/status2/deploy", params={"follow": "true"}) as r:
            events = [json.loads(line) async for line in r.aiter_lines() if line]
        assert events[-1]["type"] == "done", events
        done = (await client.get("/v1/apps/status2")).json()
        assert (done["status"], done["status_message"]) == ("running", None)
        stopped = await client.post("/v1/apps/status2/stop")
        assert stopped.json()["status"] == "stopped"
