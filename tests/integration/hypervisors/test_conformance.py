"""The conformance suite: every registered hypervisor backend must pass it.

Parametrized over ``hypervisors.available()`` (the ``hv`` fixture); what a backend's
``Features`` says it cannot do is skipped.  The guests come from the default image
(``default_image``); the backend never waits for the guest agent, so most tests need
no more than the VM process and its control socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cargobay import hypervisors
from cargobay.errors import HypervisorError
from cargobay.hypervisors.base import Hypervisor, VMHandle, VMStatus
from tests.integration.hypervisors.conftest import (
    VMFactory,
    processes_using,
    wait_for_text,
    wait_pid_gone,
)
from tests.integration.hypervisors.guests import acpi_guest_initrd

pytestmark = pytest.mark.integration

BOOT_TIMEOUT = 90.0
"""Generous: TCG on a loaded two-core machine (a boot normally takes 3-6 s)."""


def unix_path(address: str) -> Path:
    assert address.startswith("unix:"), address
    return Path(address.removeprefix("unix:"))


async def test_start_status_stop(hv: Hypervisor, vms: VMFactory) -> None:
    spec = vms.spec()
    handle = await vms.start(hv, spec)
    assert handle.backend == hv.name
    assert handle.vm_id == spec.vm_id
    assert handle.accel in ("kvm", "tcg")
    assert await hv.status(handle) is VMStatus.RUNNING
    if hv.features.serial_channel:
        # The agent channel is listening as soon as start() returns (the guest need not
        # be up): a host client can connect and wait for the agent there.
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(unix_path(handle.agent_address)))
    began = time.monotonic()
    await hv.stop(handle, timeout=3)
    # Bounded: the guest may ignore the power button; then it is killed after 3 s.
    assert time.monotonic() - began < 3 + 15
    assert await wait_pid_gone(handle.pid, 5)
    assert await hv.status(handle) is VMStatus.STOPPED


async def test_pause_and_resume(hv: Hypervisor, vms: VMFactory) -> None:
    if not hv.features.pause:
        pytest.skip(f"{hv.name} cannot pause")
    handle = await vms.start(hv, vms.spec())
    await hv.pause(handle)
    assert await hv.status(handle) is VMStatus.PAUSED
    await hv.pause(handle)  # pausing a paused VM is harmless
    assert await hv.status(handle) is VMStatus.PAUSED
    await hv.resume(handle)
    assert await hv.status(handle) is VMStatus.RUNNING


async def test_kill_then_everything_knows_it_is_gone(hv: Hypervisor, vms: VMFactory) -> None:
    handle = await vms.start(hv, vms.spec())
    await hv.kill(handle)
    assert await wait_pid_gone(handle.pid, 1)  # kill() returns once the process is gone
    assert await hv.status(handle) is VMStatus.STOPPED
    await hv.kill(handle)  # a no-op now
    await hv.stop(handle, timeout=1)  # likewise
    with pytest.raises(HypervisorError, match="gone"):
        await hv.pause(handle)
    with pytest.raises(HypervisorError, match="gone"):
        await hv.resume(handle)


async def test_stop_a_paused_vm(hv: Hypervisor, vms: VMFactory) -> None:
    if not hv.features.pause:
        pytest.skip(f"{hv.name} cannot pause")
    handle = await vms.start(hv, vms.spec())
    await hv.pause(handle)
    await hv.stop(handle, timeout=2)
    assert await hv.status(handle) is VMStatus.STOPPED


async def test_console_log_has_the_kernel_banner(hv: Hypervisor, vms: VMFactory) -> None:
    if not hv.features.console_log:
        pytest.skip(f"{hv.name} keeps no console log")
    handle = await vms.start(hv, vms.spec(quiet=False))
    log = hv.console_log(handle)
    text = await wait_for_text(log, "Linux version", BOOT_TIMEOUT)
    assert vms.manifest.kernel_version in text
    await wait_for_text(log, "Run /init as init process", BOOT_TIMEOUT)


async def test_adopt_from_the_handle_alone(hv: Hypervisor, vms: VMFactory) -> None:
    if not hv.features.adopt:
        pytest.skip(f"{hv.name} cannot adopt VMs")
    handle = await vms.start(hv, vms.spec())
    saved = json.dumps(handle.to_dict())

    # Another process (a restarted daemon) with nothing but the saved handle:
    code = (
        "import asyncio, json, sys\n"
        "from cargobay import hypervisors\n"
        "from cargobay.hypervisors.base import VMHandle\n"
        "h = VMHandle.from_dict(json.loads(sys.argv[2]))\n"
        "print(asyncio.run(hypervisors.get(sys.argv[1]).status(h)).value)\n"
    )
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, hv.name, saved],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "running"

    # A fresh backend instance in this process drives it completely.
    fresh = hypervisors.get(hv.name)
    adopted = VMHandle.from_dict(json.loads(saved))
    assert await fresh.status(adopted) is VMStatus.RUNNING
    if fresh.features.pause:
        await fresh.pause(adopted)
        assert await hv.status(handle) is VMStatus.PAUSED
        await fresh.resume(adopted)
        assert await hv.status(handle) is VMStatus.RUNNING
    await fresh.kill(adopted)
    assert await hv.status(handle) is VMStatus.STOPPED


async def test_graceful_stop_reaches_the_guest(hv: Hypervisor, vms: VMFactory) -> None:
    """A guest that handles the ACPI power button powers off before the timeout."""
    if not hv.features.graceful_stop:
        pytest.skip(f"{hv.name} has no graceful stop")
    assert vms.initrd is not None
    spec = vms.spec(quiet=False)
    initrd = acpi_guest_initrd(
        vms.initrd,
        vms.manifest.kernel_version,
        vms.rootfs,
        spec.state_dir.parent / "acpi.img",
        modules=vms.manifest.kernel_kind != "minimal",
    )
    spec = dataclasses.replace(spec, initrd=initrd, cmdline=f"{spec.cmdline} rdinit=/cbtest")
    handle = await vms.start(hv, spec)
    log = hv.console_log(handle)
    await wait_for_text(log, "CBTEST-ACPI-READY", BOOT_TIMEOUT)
    timeout = 60.0
    began = time.monotonic()
    await hv.stop(handle, timeout=timeout)
    took = time.monotonic() - began
    text = log.read_text(errors="replace")
    assert "CBTEST-POWER-BUTTON" in text
    assert took < timeout  # it powered off; it was not killed at the deadline
    assert await hv.status(handle) is VMStatus.STOPPED


async def test_start_failure_leaves_nothing_running(hv: Hypervisor, vms: VMFactory) -> None:
    spec = vms.spec(kernel=Path("/nonexistent/vmlinuz"))
    with pytest.raises(HypervisorError) as caught:
        await vms.start(hv, spec)
    assert "/nonexistent/vmlinuz" in str(caught.value)
    assert processes_using(spec.run_dir) == []
