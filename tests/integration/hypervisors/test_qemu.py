"""QEMU-specific behaviour: what the guest is given, failures, crashes, pid reuse, a busy QMP
socket, several VMs at once, two vCPUs under TCG, q35, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from cargobay.errors import Conflict, HypervisorError
from cargobay.hypervisors import process
from cargobay.hypervisors.base import Hypervisor, VMHandle, VMStatus
from cargobay.hypervisors.qemu import QMP_TIMEOUT
from tests.integration.hypervisors.conftest import (
    VMFactory,
    pid_gone,
    processes_using,
    wait_for_text,
    wait_pid_gone,
)

pytestmark = pytest.mark.integration

BOOT_TIMEOUT = 90.0
INIT = "Run /init as init process"


async def qmp(handle: VMHandle, command: str) -> object:
    client = QMPClient("test")
    await asyncio.wait_for(client.connect(handle.control_socket), 10)
    try:
        return await asyncio.wait_for(client.execute(command), 10)
    finally:
        await client.disconnect()


async def test_the_guest_gets_the_boot_contract(qemu_hv: Hypervisor, vms: VMFactory) -> None:
    spec = vms.spec(name="contract-1", quiet=False)
    handle = await vms.start(qemu_hv, spec)
    assert handle.control_socket == str(spec.run_dir / "qmp.sock")
    assert handle.agent_address == f"unix:{spec.run_dir / 'agent.sock'}"
    assert handle.qga_address == f"unix:{spec.run_dir / 'qga.sock'}"
    assert handle.console_log == str(spec.state_dir / "console.log")

    text = await wait_for_text(Path(handle.console_log), "Kernel command line:", BOOT_TIMEOUT)
    line = next(x for x in text.splitlines() if "Kernel command line:" in x).split()
    assert "cargobay.name=contract-1" in line
    assert "pci=off" in line
    if handle.accel == "tcg":
        assert "tsc=reliable" in line
        assert any(word.startswith("tsc_early_khz=") for word in line)

    blocks = {b["device"]: b for b in await qmp(handle, "query-block")}  # type: ignore[attr-defined]
    assert blocks["root"]["inserted"]["ro"] is True
    assert blocks["root"]["inserted"]["file"] == str(spec.rootfs)
    assert blocks["data"]["inserted"]["ro"] is False
    assert blocks["data"]["inserted"]["file"] == str(spec.data_disk)
    chardevs = {c["label"]: c["filename"] for c in await qmp(handle, "query-chardev")}  # type: ignore[attr-defined]
    assert str(spec.run_dir / "agent.sock") in chardevs["agent"]
    assert str(spec.run_dir / "qga.sock") in chardevs["qga"]
    kvm = await qmp(handle, "query-kvm")
    assert kvm["enabled"] is (handle.accel == "kvm")  # type: ignore[index]

    # The guest sees both virtio-serial ports by name (the kernel creates them before init).
    await wait_for_text(Path(handle.console_log), INIT, BOOT_TIMEOUT)


async def test_bad_kernel_path_reports_qemus_message(qemu_hv: Hypervisor, vms: VMFactory) -> None:
    spec = vms.spec(kernel=Path("/nonexistent/vmlinuz-x"))
    with pytest.raises(
        HypervisorError, match="could not open kernel file '/nonexistent/vmlinuz-x'"
    ):
        await vms.start(qemu_hv, spec)
    assert processes_using(spec.run_dir) == []
    assert not (spec.run_dir / "qemu.pid").exists()


async def test_bad_data_disk_reports_qemus_message(qemu_hv: Hypervisor, vms: VMFactory) -> None:
    spec = vms.spec()
    spec = dataclasses.replace(spec, data_disk=spec.state_dir.parent / "missing.img")
    with pytest.raises(HypervisorError) as caught:
        await vms.start(qemu_hv, spec)
    assert "missing.img" in str(caught.value)
    assert "No such file" in str(caught.value)
    assert processes_using(spec.run_dir) == []


async def test_qemu_killed_from_outside_then_started_again(
    qemu_hv: Hypervisor, vms: VMFactory
) -> None:
    spec = vms.spec(quiet=False)
    handle = await vms.start(qemu_hv, spec)
    await wait_for_text(Path(handle.console_log), "Linux version", BOOT_TIMEOUT)
    os.kill(handle.pid, signal.SIGKILL)
    assert await wait_pid_gone(handle.pid, 10)
    assert await qemu_hv.status(handle) is VMStatus.STOPPED
    await qemu_hv.kill(handle)  # nothing to do, no error

    # The same VM starts again; the crashed boot's console is kept as console.log.1.
    again = await vms.start(qemu_hv, spec)
    assert again.pid != handle.pid
    assert await qemu_hv.status(again) is VMStatus.RUNNING
    assert await qemu_hv.status(handle) is VMStatus.STOPPED  # the old handle stays dead
    previous = spec.state_dir / "console.log.1"
    assert "Linux version" in previous.read_text(errors="replace")


async def test_a_reused_pid_is_never_touched(qemu_hv: Hypervisor, tmp_path: Path) -> None:
    """A handle whose pid now belongs to another process: STOPPED, and kill() spares it."""
    boot_id = process.boot_id()
    victim = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        handle = VMHandle(
            vm_id="reused",
            backend="qemu",
            pid=victim.pid,
            control_socket=str(tmp_path / "qmp.sock"),
            agent_address=f"unix:{tmp_path / 'agent.sock'}",
            console_log=str(tmp_path / "console.log"),
            accel="tcg",
            extra={"proc_start": "1", "boot_id": boot_id},  # not the sleep's start time
        )
        assert await qemu_hv.status(handle) is VMStatus.STOPPED
        await qemu_hv.kill(handle)
        await qemu_hv.stop(handle, timeout=1)
        assert victim.returncode is None
        assert not pid_gone(victim.pid)  # still running
    finally:
        victim.kill()
        await victim.wait()


async def test_an_unanswering_qmp_socket_is_unknown_not_a_hang(
    qemu_hv: Hypervisor, vms: VMFactory
) -> None:
    handle = await vms.start(qemu_hv, vms.spec())
    # QEMU serves one QMP client at a time: while we hold the socket, nobody else is answered.
    with socket.socket(socket.AF_UNIX) as holder:
        holder.settimeout(10)
        holder.connect(handle.control_socket)
        assert b"QMP" in holder.recv(4096)  # the greeting: we are the client being served
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await qemu_hv.status(handle) is VMStatus.UNKNOWN
        assert loop.time() - began < QMP_TIMEOUT + 5
        with pytest.raises(HypervisorError, match="did not answer"):
            await qemu_hv.pause(handle)
    assert await qemu_hv.status(handle) is VMStatus.RUNNING


async def test_two_vms_at_once_one_with_two_vcpus(qemu_hv: Hypervisor, vms: VMFactory) -> None:
    """Two VMs boot side by side; the one with -smp 2 boots under TCG too (the TSC
    parameters keep it from hanging at PIT calibration); killing one spares the other."""
    a, b = vms.spec(quiet=False, cpus=2), vms.spec(quiet=False)
    ha, hb = await asyncio.gather(vms.start(qemu_hv, a), vms.start(qemu_hv, b))
    assert ha.pid != hb.pid
    assert ha.control_socket != hb.control_socket
    text_a, _ = await asyncio.gather(
        wait_for_text(Path(ha.console_log), INIT, BOOT_TIMEOUT),
        wait_for_text(Path(hb.console_log), INIT, BOOT_TIMEOUT),
    )
    assert "Brought up 1 node, 2 CPUs" in text_a
    await qemu_hv.kill(ha)
    assert await qemu_hv.status(ha) is VMStatus.STOPPED
    assert await qemu_hv.status(hb) is VMStatus.RUNNING


async def test_q35_boots_too(qemu_hv: Hypervisor, vms: VMFactory) -> None:
    handle = await vms.start(qemu_hv, vms.spec(quiet=False, extra={"machine": "q35"}))
    assert handle.extra["machine"] == "q35"
    text = await wait_for_text(Path(handle.console_log), INIT, BOOT_TIMEOUT)
    assert "pci=off" not in text
    assert await qemu_hv.status(handle) is VMStatus.RUNNING


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1, 0.3])
async def test_a_cancelled_start_leaves_nothing_running(
    qemu_hv: Hypervisor, vms: VMFactory, delay: float
) -> None:
    spec = vms.spec()
    task = asyncio.ensure_future(vms.start(qemu_hv, spec))
    await asyncio.sleep(delay)
    task.cancel()
    try:
        handle = await task
    except asyncio.CancelledError:
        pass
    else:  # start() finished before the cancel arrived: a normal running VM
        assert await qemu_hv.status(handle) is VMStatus.RUNNING
        return
    await asyncio.sleep(0.2)
    assert processes_using(spec.run_dir) == []


async def test_status_answers_while_a_stop_waits(qemu_hv: Hypervisor, vms: VMFactory) -> None:
    """stop() waits for the guest without blocking the VM's other calls."""
    handle = await vms.start(qemu_hv, vms.spec())
    stopping = asyncio.ensure_future(qemu_hv.stop(handle, timeout=8))
    try:
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        status = await qemu_hv.status(handle)
        assert loop.time() - began < QMP_TIMEOUT + 1
        assert status in (VMStatus.RUNNING, VMStatus.STOPPED)
    finally:
        await stopping
    assert await qemu_hv.status(handle) is VMStatus.STOPPED


async def test_a_second_start_of_a_running_vm_is_refused(
    qemu_hv: Hypervisor, vms: VMFactory
) -> None:
    spec = vms.spec()
    handle = await vms.start(qemu_hv, spec)
    with pytest.raises(Conflict, match="already has a QEMU process running"):
        await vms.start(qemu_hv, spec)
    assert await qemu_hv.status(handle) is VMStatus.RUNNING  # untouched, sockets included
