"""Restart policies with real QEMU: a machine whose VM process is killed from outside
comes back by itself under ``on-failure:1``, once; the second kill leaves it in ERROR
with the reason and the count on record.  A user stop resets the count."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from cargobay.errors import InvalidInput
from cargobay.machines.models import VMInstance, VMStateKind
from cargobay.machines.process import process_alive
from cargobay.machines.restart import check_restart
from tests.integration.machines.test_snapshots import Env, env, run

__all__ = ["env"]

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

NAME = "crashy"


async def wait_state(e: Env, kind: VMStateKind, timeout: float = 120) -> VMInstance:
    deadline = time.monotonic() + timeout
    while True:
        vm = e.service.get_machine(NAME)
        if vm.state.kind is kind:
            return vm
        assert time.monotonic() < deadline, f"still {vm.state} after {timeout} s"
        await asyncio.sleep(0.1)


def kill_qemu(vm: VMInstance) -> int:
    pid = int((vm.runtime.handle or {})["pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


async def test_on_failure_restarts_once_then_gives_up(env: Env) -> None:
    with pytest.raises(InvalidInput, match="bad policy"):
        check_restart("sometimes")
    vm = VMInstance(name=NAME)
    config = vm.config.model_copy(update={"memory_mb": 256, "restart": "on-failure:1"})
    vm = await env.service.create(vm.model_copy(update={"config": config}), boot_timeout=240)
    await run(env.service, NAME, "echo before > /root/mark; sync")

    first = kill_qemu(vm)
    await wait_state(env, VMStateKind.ERROR)
    back = await wait_state(env, VMStateKind.RUNNING)
    assert back.runtime.restarts == 1
    assert "ended unexpectedly" in (back.runtime.last_exit or "")
    assert int((back.runtime.handle or {})["pid"]) != first
    assert await run(env.service, NAME, "cat /root/mark") == "before"

    kill_qemu(back)
    failed = await wait_state(env, VMStateKind.ERROR)
    await asyncio.sleep(3)  # longer than the next backoff (2 s): no restart comes
    failed = env.service.get_machine(NAME)
    assert failed.state.kind is VMStateKind.ERROR
    assert failed.runtime.restarts == 1

    # The user acts: the count starts again.
    started = await env.service.start(NAME, boot_timeout=120)
    assert started.runtime.restarts == 0
    stopped = await env.service.stop(NAME, timeout=30)
    assert stopped.state.kind is VMStateKind.STOPPED
    assert not process_alive(int((started.runtime.handle or {})["pid"]))
