"""cargobay.apps.ptyproc with real processes under a real PTY."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from cargobay.apps.ptyproc import ProcessEvent, ProcessSpec, ProcState, PtyProcess
from cargobay.errors import AppProcessError


def _alive(pid: int) -> bool:
    """True while /proc has the pid and it is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_output_keeps_ansi_and_sees_a_terminal() -> None:
    chunks: list[bytes] = []
    events: list[ProcessEvent] = []
    script = "import sys; print(sys.stdout.isatty()); print('\\x1b[31mred\\x1b[0m')"
    proc = PtyProcess(
        ProcessSpec(argv=[sys.executable, "-c", script]),
        on_output=chunks.append,
        on_event=events.append,
    )
    await proc.start()
    assert await proc.wait() == 0
    out = b"".join(chunks)
    assert b"True" in out
    assert b"\x1b[31mred\x1b[0m" in out
    assert proc.history() == out
    assert [e.kind for e in events] == ["started", "exited"]
    assert proc.state == ProcState.EXITED
    assert not _exists(events[0].pid or 0)  # reaped: no zombie


async def test_exit_code_detected_and_no_restart_by_default() -> None:
    proc = PtyProcess(ProcessSpec(argv=["sh", "-c", "exit 3"]))
    await proc.start()
    assert await proc.wait() == 3
    assert proc.restarts == 0


async def test_stop_sends_term_then_kill_after_grace() -> None:
    proc = PtyProcess(ProcessSpec(argv=["sleep", "30"]))
    await proc.start()
    pid = proc.pid
    assert pid is not None
    assert _alive(pid)
    assert await proc.stop(grace=5) == -15
    assert not _exists(pid)

    stubborn = PtyProcess(ProcessSpec(argv=["sh", "-c", "trap '' TERM; echo ready; sleep 30"]))
    ready = asyncio.Event()
    stubborn._on_output = lambda data: ready.set() if b"ready" in data else None
    await stubborn.start()
    await asyncio.wait_for(ready.wait(), 5)
    assert await stubborn.stop(grace=0.3) == -9
    assert stubborn.state == ProcState.STOPPED
    assert not _exists(stubborn.pid or 0)


async def test_stop_reaches_the_apps_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    proc = PtyProcess(ProcessSpec(argv=["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]))
    await proc.start()
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.02)
    child = int(pidfile.read_text())
    assert _alive(child)
    await proc.stop(grace=5)
    for _ in range(100):
        if not _alive(child):
            break
        await asyncio.sleep(0.02)
    assert not _alive(child)


async def test_on_failure_restarts_with_backoff_up_to_the_limit() -> None:
    events: list[ProcessEvent] = []
    spec = ProcessSpec(
        argv=["sh", "-c", "echo run; exit 1"],
        restart="on-failure",
        max_restarts=2,
        backoff_initial=0.01,
    )
    proc = PtyProcess(spec, on_event=events.append)
    await proc.start()
    assert await proc.wait() == 1
    assert [e.kind for e in events] == [
        "started",
        "exited",
        "restarting",
        "started",
        "exited",
        "restarting",
        "started",
        "exited",
    ]
    delays = [e.delay for e in events if e.kind == "restarting"]
    assert delays == [0.01, 0.02]
    assert proc.history().count(b"run") == 3


async def test_on_failure_does_not_restart_success_but_always_does() -> None:
    ok = PtyProcess(ProcessSpec(argv=["true"], restart="on-failure", backoff_initial=0.01))
    await ok.start()
    assert await ok.wait() == 0
    assert ok.restarts == 0
    always = PtyProcess(
        ProcessSpec(argv=["true"], restart="always", max_restarts=1, backoff_initial=0.01)
    )
    await always.start()
    assert await always.wait() == 0
    assert always.restarts == 1


async def test_stop_during_backoff_and_restart() -> None:
    events: list[ProcessEvent] = []
    proc = PtyProcess(
        ProcessSpec(argv=["false"], restart="always", backoff_initial=30), on_event=events.append
    )
    await proc.start()
    for _ in range(200):
        if proc.state == ProcState.BACKOFF:
            break
        await asyncio.sleep(0.01)
    assert proc.state == ProcState.BACKOFF
    assert await asyncio.wait_for(proc.stop(), 5) == 1
    assert events[-1].kind == "stopped"

    runner = PtyProcess(ProcessSpec(argv=["sleep", "30"]))
    await runner.start()
    first = runner.pid
    await runner.restart(grace=5)
    assert runner.pid != first
    assert runner.state == ProcState.RUNNING
    with pytest.raises(AppProcessError, match="already running"):
        await runner.start()
    await runner.stop(grace=5)


async def test_send_input_and_bad_command(tmp_path: Path) -> None:
    chunks: list[bytes] = []
    proc = PtyProcess(
        ProcessSpec(argv=["sh", "-c", "read line; echo got:$line"]), on_output=chunks.append
    )
    await proc.start()
    proc.send(b"hello\n")
    assert await proc.wait() == 0
    assert b"got:hello" in b"".join(chunks)
    with pytest.raises(AppProcessError, match="not running"):
        proc.send(b"x")
    with pytest.raises(AppProcessError, match="cannot start"):
        await PtyProcess(ProcessSpec(argv=[str(tmp_path / "missing")])).start()
    assert os.listdir(tmp_path) == []


async def test_restart_that_cannot_spawn_ends_as_exited(tmp_path: Path) -> None:
    program = tmp_path / "app.sh"
    program.write_text(f"#!/bin/sh\nrm {program}\nexit 2\n")
    program.chmod(0o755)
    proc = PtyProcess(ProcessSpec(argv=[str(program)], restart="on-failure", backoff_initial=0.01))
    await proc.start()
    assert await proc.wait() == 2
    assert proc.state == ProcState.EXITED
    assert b"restart failed" in proc.history()
