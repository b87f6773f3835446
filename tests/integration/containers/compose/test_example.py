"""examples/compose/compose.yaml runs as its README says (with the local busybox image)."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path

from cargobay.containers.compose.loader import load_project
from cargobay.containers.compose.service import ComposeService
from tests.support import REPO

EXAMPLE = REPO / "examples" / "compose" / "compose.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


async def test_example_stack(docker_engine: str, busybox_image: str, unique_name: str) -> None:
    port = _free_port()
    env = {"IMAGE": busybox_image, "WEB_PORT": str(port)}
    loaded = load_project([EXAMPLE], env=env, project_name=unique_name.replace("-", ""))
    service = ComposeService(docker_engine)
    try:
        await service.up(loaded)
        rows = {r["service"]: r for r in await service.ps(loaded.project.name)}
        assert rows["migrate"]["state"] == "exited"
        assert rows["web"]["state"] == "running"
        page = ""
        for _ in range(50):
            try:
                page = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/")
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert "Served by busybox httpd" in page
        assert page == (Path(EXAMPLE).parent / "site" / "index.html").read_text()
        logs = [e["line"] async for e in service.logs(loaded.project.name, services=["migrate"])]
        assert logs == ["ready", "migrated"]
    finally:
        await service.down(loaded, volumes=True)
    assert await service.ps(loaded.project.name) == []
