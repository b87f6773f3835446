"""MachineService with real QEMU, the default guest image and the guest agent.

One machine is booted for the module and taken through its life in file order: boot,
exec (streamed, stdin, env, cwd, a missing program, a client that leaves early), pause
and resume, a graceful stop and a start that finds the files written before, QEMU killed
from outside (ERROR), a start from ERROR, a forced stop, delete.  Two more boots fail on
purpose (a guest whose PID 1 exits, one whose agent never starts) and must leave nothing
behind.  Every state change is checked in the store's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from cargobay.errors import CargoBayError, Conflict, GuestError, GuestTimeout, HypervisorError
from cargobay.hypervisors.base import VMHandle
from cargobay.hypervisors.qemu import QemuHypervisor
from cargobay.images import ImageManifest, ImageStore
from cargobay.machines.agent import (
    ExecEvent,
    ExecExit,
    ExecOutput,
    ExecRequest,
    ExecStarted,
    GuestAgentConnector,
)
from cargobay.machines.models import VMInstance, VMStateKind
from cargobay.machines.process import process_alive
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store
from tests.integration.machines.variants import (
    NEVER_ANSWERS,
    PANICS,
    image_store_with_variants,
    shared_cache_dir,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

K = VMStateKind
NAME = "life"
MEMORY = "320MB"


@dataclass
class Env:
    paths: Paths
    store: Store
    service: MachineService


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(default_image: tuple[Path, ImageManifest]) -> AsyncIterator[Env]:
    home = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    images = image_store_with_variants(home / "images", default_image[0])
    paths = Paths(home / "data", home / "state", shared_cache_dir(), home / "run", images)
    paths.ensure()
    store = Store.open(paths.db)
    service = MachineService(
        paths,
        store,
        lambda _name: QemuHypervisor(paths=paths),
        ImageStore(paths.images),
        GuestAgentConnector(),
    )
    try:
        yield Env(paths, store, service)
    finally:
        for vm in store.list_machines():
            with contextlib.suppress(CargoBayError):
                await service.delete(vm.name, force=True)
        await service.close()
        store.close()
        leftovers = qemu_processes(str(home))
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
        assert leftovers == [], "QEMU processes were left running"


def qemu_processes(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"qemu-system" in argv[0] and any(marker.encode() in a for a in argv):
                pids.append(int(entry.name))
    return pids


def handle_of(vm: VMInstance) -> VMHandle:
    assert vm.runtime.handle is not None
    return VMHandle.from_dict(vm.runtime.handle)


def history(env: Env, vm: VMInstance) -> list[tuple[K | None, K]]:
    return [(e.from_state, e.to_state) for e in env.store.events(vm.id)]


async def run(bay: Env, argv: list[str], **kwargs: object) -> tuple[bytes, bytes, ExecExit]:
    out, err = bytearray(), bytearray()
    exit_event = None
    async for event in await bay.service.exec(NAME, ExecRequest(argv=argv, **kwargs)):  # type: ignore[arg-type]
        if isinstance(event, ExecOutput):
            (out if event.stream == "stdout" else err).extend(event.data)
        elif isinstance(event, ExecExit):
            exit_event = event
    assert exit_event is not None
    return bytes(out), bytes(err), exit_event


async def wait_for_state(env: Env, kind: K, timeout: float = 30) -> VMInstance:
    deadline = time.monotonic() + timeout
    while True:
        vm = env.store.get_machine(NAME)
        if vm.state.kind is kind:
            return vm
        assert time.monotonic() < deadline, f"still {vm.state} after {timeout} s"
        await asyncio.sleep(0.1)


# -- the machine's life -------------------------------------------------------------------


async def test_create_and_boot(env: Env) -> None:
    vm = env.service.validate(NAME, memory=MEMORY, disk="256MB")
    vm = await env.service.create(vm, start=True, boot_timeout=180)
    assert vm.state.kind is K.RUNNING
    assert history(env, vm) == [(None, K.CREATING), (K.CREATING, K.RUNNING)]
    assert env.store.get_machine(NAME) == vm
    handle = handle_of(vm)
    assert process_alive(handle.pid)
    assert vm.runtime.accel in ("kvm", "tcg")
    assert vm.runtime.boot_seconds is not None
    assert vm.runtime.boot_seconds > 0
    assert env.service.agent_ready(vm)
    disk = env.paths.machines / vm.id / "data.ext4"
    assert disk.stat().st_size == 256 * 1024 * 1024
    assert disk.stat().st_blocks * 512 < 64 * 1024 * 1024  # sparse
    with disk.open("rb") as f:  # the ext4 superblock's volume name
        f.seek(1024 + 120)
        assert f.read(16).rstrip(b"\0") == b"cbdata"


async def test_exec_collects_output_and_exit_code(env: Env) -> None:
    out, err, status = await run(env, ["sh", "-c", "echo hello; echo oops >&2; hostname; exit 3"])
    assert out == f"hello\n{NAME}\n".encode()
    assert err == b"oops\n"
    assert (status.exit_code, status.signal, status.timed_out) == (3, None, False)


async def test_exec_events_are_ordered_and_streamed(env: Env) -> None:
    events: list[ExecEvent] = []
    stream = await env.service.exec(
        NAME, ExecRequest(argv=["sh", "-c", "echo first; exec sleep 987"])
    )
    async for event in stream:
        events.append(event)
        if isinstance(event, ExecOutput):
            break  # the output arrived while the command still runs
    await stream.aclose()  # type: ignore[attr-defined]
    assert isinstance(events[0], ExecStarted)
    assert events[-1] == ExecOutput("stdout", b"first\n")
    # Leaving the stream early kills the command in the guest.
    for _ in range(50):
        out, _, _ = await run(env, ["sh", "-c", "busybox pgrep -f 'sleep 987' || true"])
        if not out.strip():
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail("the command of an abandoned exec stream is still running")


async def test_exec_stdin_env_cwd_timeout(env: Env) -> None:
    out, _, status = await run(
        env,
        ["sh", "-c", 'pwd; echo "$GREETING"; cat'],
        env={"GREETING": "hi there"},
        cwd="/tmp",
        stdin=b"from stdin\n",
    )
    assert out == b"/tmp\nhi there\nfrom stdin\n"
    assert status.exit_code == 0
    _, _, status = await run(env, ["sleep", "30"], timeout=0.5)
    assert status.timed_out
    assert status.exit_code is None
    assert status.signal == signal.SIGKILL


async def test_exec_of_a_missing_program(env: Env) -> None:
    stream = await env.service.exec(NAME, ExecRequest(argv=["/no/such/program"]))
    with pytest.raises(GuestError, match="/no/such/program"):
        await anext(stream)  # type: ignore[call-overload]
    out, _, _ = await run(env, ["true"])  # the connection is still good
    assert out == b""


async def test_pause_and_resume(env: Env) -> None:
    vm = await env.service.pause(NAME)
    assert vm.state.kind is K.PAUSED
    with pytest.raises(Conflict, match="paused; resume it"):
        await env.service.exec(NAME, ExecRequest(argv=["true"]))
    with pytest.raises(Conflict, match="paused"):
        await env.service.start(NAME)
    vm = await env.service.resume(NAME)
    assert vm.state.kind is K.RUNNING
    out, _, _ = await run(env, ["echo", "back"])
    assert out == b"back\n"
    assert history(env, vm)[-2:] == [(K.RUNNING, K.PAUSED), (K.PAUSED, K.RUNNING)]


async def test_second_start_is_a_conflict(env: Env) -> None:
    with pytest.raises(Conflict, match="already running"):
        await env.service.start(NAME)


async def test_graceful_stop_and_start_keep_the_files(env: Env) -> None:
    await run(env, ["sh", "-c", "echo kept > /root/note && sync"])
    before = env.store.get_machine(NAME)
    old_pid = handle_of(before).pid
    vm = await env.service.stop(NAME, timeout=30)
    assert vm.state.kind is K.STOPPED
    assert vm.runtime.handle is None
    assert history(env, vm)[-2:] == [(K.RUNNING, K.STOPPING), (K.STOPPING, K.STOPPED)]
    assert not process_alive(old_pid)
    assert not env.paths.machine_run_dir(vm.id).exists()
    # The guest powered itself off (the agent's shutdown), it was not killed.
    console = "".join([chunk async for chunk in env.service.logs(NAME)])
    assert "powering off" in console
    vm = await env.service.start(NAME, boot_timeout=180)
    assert vm.state.kind is K.RUNNING
    assert history(env, vm)[-2:] == [(K.STOPPED, K.CREATING), (K.CREATING, K.RUNNING)]
    assert handle_of(vm).pid != old_pid
    out, _, _ = await run(env, ["cat", "/root/note"])
    assert out == b"kept\n"


async def test_logs(env: Env) -> None:
    text = "".join([chunk async for chunk in env.service.logs(NAME)])
    tail = "".join([chunk async for chunk in env.service.logs(NAME, tail=2)])
    assert tail.count("\n") <= 2
    assert text.endswith(tail)


async def test_qemu_killed_from_outside_becomes_error(env: Env) -> None:
    vm = env.store.get_machine(NAME)
    pid = handle_of(vm).pid
    os.kill(pid, signal.SIGKILL)
    vm = await wait_for_state(env, K.ERROR)
    assert f"pid {pid}" in (vm.state.reason or "")
    assert "ended unexpectedly" in (vm.state.reason or "")
    assert history(env, vm)[-1] == (K.RUNNING, K.ERROR)
    assert vm.runtime.handle is None
    assert not env.service.agent_ready(vm)
    with pytest.raises(Conflict, match="start it with"):
        await env.service.exec(NAME, ExecRequest(argv=["true"]))


async def test_start_from_error_then_force_stop(env: Env) -> None:
    vm = await env.service.start(NAME, boot_timeout=180)
    assert vm.state.kind is K.RUNNING
    assert history(env, vm)[-2:] == [(K.ERROR, K.CREATING), (K.CREATING, K.RUNNING)]
    out, _, _ = await run(env, ["cat", "/root/note"])
    assert out == b"kept\n"
    pid = handle_of(vm).pid
    vm = await env.service.stop(NAME, force=True)
    assert vm.state.kind is K.STOPPED
    assert not process_alive(pid)
    assert history(env, vm)[-2:] == [(K.RUNNING, K.STOPPING), (K.STOPPING, K.STOPPED)]


async def test_delete_leaves_nothing(env: Env) -> None:
    vm = env.store.get_machine(NAME)
    await env.service.delete(NAME)
    assert env.store.find_machine(NAME) is None
    assert env.store.events(vm.id) == []
    assert not (env.paths.machines / vm.id).exists()
    assert qemu_processes(str(env.paths.data.parent)) == []


# -- boots that fail ----------------------------------------------------------------------


async def assert_nothing_left(env: Env, name: str) -> None:
    assert env.store.find_machine(name) is None
    assert list(env.paths.machines.iterdir()) == []
    vm_runs = env.paths.runtime / "vm"
    assert not vm_runs.exists() or list(vm_runs.iterdir()) == []
    assert qemu_processes(str(env.paths.data.parent)) == []


async def test_guest_whose_init_exits_fails_and_leaves_nothing(env: Env) -> None:
    vm = env.service.validate("panics", image=PANICS, memory="256MB", disk="64MB")
    with pytest.raises((HypervisorError, GuestTimeout)) as info:
        await env.service.create(vm, start=True, boot_timeout=60)
    message = str(info.value)
    assert "'panics'" in message
    assert "console" in message
    await assert_nothing_left(env, "panics")


async def test_guest_that_never_answers_times_out_and_leaves_nothing(env: Env) -> None:
    vm = env.service.validate("mute", image=NEVER_ANSWERS, memory="256MB", disk="64MB")
    with pytest.raises(GuestTimeout) as info:
        await env.service.create(vm, start=True, boot_timeout=6)
    message = str(info.value)
    assert message.splitlines()[0].startswith(
        "machine 'mute': the guest agent did not answer within 6 s"
    )
    assert "--boot-timeout" in message
    await assert_nothing_left(env, "mute")
