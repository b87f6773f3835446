"""An engine that goes away in the middle of ``up``: the error names the service and
says exactly what could not be rolled back (the engine is gone, so nothing could)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cargobay.containers.compose.service import ComposeService
from cargobay.errors import ComposeError
from tests.integration.containers.test_engine_gone import Relay

from .conftest import StackFactory

pytestmark = pytest.mark.integration

STACK = """
services:
  first:
    image: BUSYBOX
    command: ["sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 300"]
    stop_signal: SIGKILL
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ok"], interval: 500ms, retries: 20}
  second:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    depends_on: {first: {condition: service_healthy}}
"""


async def test_engine_gone_mid_up(stack: StackFactory, tmp_path: Path) -> None:
    s = stack(STACK)
    relay = Relay(tmp_path / "relay.sock", s.docker_url.removeprefix("unix://"))
    await relay.start()
    cut: list[asyncio.Task[None]] = []

    def emit(event: dict[str, Any]) -> None:
        s.events.append(event)
        if event.get("status") == "Started" and not cut:
            cut.append(asyncio.get_running_loop().create_task(relay.close()))

    try:
        with pytest.raises(ComposeError) as info:
            await ComposeService(f"unix://{relay.path}").up(s.load(), emit=emit)
    finally:
        await relay.close()
    message = str(info.value)
    assert "service 'second'" in message  # waiting on first's health when the engine left
    assert "could not undo this `up` for " in message
    assert f"container {s.name}_first_1 (new)" in message
    assert f"network {s.name}_default" in message
    assert "run `down`" in message
    # exactly the containers the message names are left (second may or may not have been
    # created when the engine went away)
    rows = await s.service.ps(s.name)  # through the real socket
    left = {r["name"] for r in rows}
    assert f"{s.name}_first_1" in left
    assert left == {name for name in left if f"container {name} (new)" in message}
    # and a later `down` (engine back) clears it
    await s.service.down(s.load())
    assert await s.service.ps(s.name) == []
