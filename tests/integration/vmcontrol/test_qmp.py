"""The QMP session wrapper against a real QEMU (a PC with SeaBIOS and a VGA, no guest OS)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cargobay.vmcontrol.qmp import QmpCommandError, QmpConnection, QmpError
from tests.support import require_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def qemu_qmp(tmp_path: Path) -> Iterator[Path]:
    qemu = require_binary("qemu-system-x86_64", "Debian: apt-get install qemu-system-x86")
    sock = tmp_path / "qmp.sock"
    proc = subprocess.Popen(
        [
            qemu,
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-m",
            "64",
            "-nodefaults",
            "-vga",
            "std",
            "-display",
            "none",
            "-S",
            "-qmp",
            f"unix:{sock},server=on,wait=off",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(500):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is not None:
            pytest.fail(f"QEMU exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        yield sock
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
async def qmp(qemu_qmp: Path) -> AsyncIterator[QmpConnection]:
    async with await QmpConnection.connect(qemu_qmp, timeout=10) as conn:
        yield conn


async def test_status_stop_cont_and_events(qmp: QmpConnection) -> None:
    assert qmp.greeting["QMP"]["version"]["qemu"]["major"] >= 7
    assert await qmp.query_status() == "prelaunch"
    resumed = asyncio.create_task(qmp.wait_event("RESUME", timeout=10))
    await asyncio.sleep(0)
    await qmp.cont()
    event = await resumed
    assert event["event"] == "RESUME"
    assert await qmp.query_status() == "running"
    stopped = asyncio.create_task(qmp.wait_event("STOP", timeout=10))
    await asyncio.sleep(0)
    await qmp.stop()
    assert (await stopped)["event"] == "STOP"
    assert await qmp.query_status() == "paused"


async def test_screendump_writes_a_png(qmp: QmpConnection, tmp_path: Path) -> None:
    await qmp.cont()
    await asyncio.sleep(0.5)  # let SeaBIOS draw something; any frame will do
    target = await qmp.screendump(tmp_path / "screen.png")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="absolute"):
        await qmp.screendump("relative.png")


async def test_keys_and_hmp(qmp: QmpConnection) -> None:
    await qmp.send_keys(["shift", "a"])
    out = await qmp.human("info status")
    assert "VM status" in out


async def test_command_error_is_typed_and_session_survives(qmp: QmpConnection) -> None:
    with pytest.raises(QmpCommandError) as info:
        await qmp.execute("no-such-command")
    assert info.value.error_class == "CommandNotFound"
    with pytest.raises(QmpCommandError):
        await qmp.send_keys(["not-a-key"])
    assert await qmp.query_status() == "prelaunch"


async def test_event_timeout_and_bad_socket(qmp: QmpConnection, tmp_path: Path) -> None:
    with pytest.raises(QmpError, match="no QMP event"):
        await qmp.wait_event("SHUTDOWN", timeout=0.2)
    with pytest.raises(QmpError, match="cannot open a QMP session"):
        await QmpConnection.connect(tmp_path / "missing.sock", timeout=2)


async def test_closed_session_refuses_commands(qemu_qmp: Path) -> None:
    conn = await QmpConnection.connect(qemu_qmp, timeout=10)
    await conn.close()
    with pytest.raises(QmpError, match="connect again"):
        await conn.query_status()
