"""The agent where it really runs: PID 1 of a TCG microVM, behind a virtio-serial port.

One boot of the default image (its agent is this tree's: the image recipe hashes the
agent's sources) with a QEMU command line of its own, so that only the image and the
agent are under test here.  It checks what a pty cannot show: QEMU's chardev socket and
the virtio-serial port, a host that reconnects at once (the guest may not see it leave:
its next sync request lands in the stale session), the guest's PID 1, and a shutdown that
powers the VM off.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargobay.guest.client import AgentClient, wait_ready
from cargobay.guest.protocol import AGENT_PORT_NAME, QGA_PORT_NAME
from cargobay.images import ImageManifest
from tests.support import require_binary

from .conftest import path_exists


class VM:
    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path) -> None:
        self.proc = proc
        self.workdir = workdir
        self.agent_address = f"unix:{workdir}/agent.sock"

    def console(self) -> str:
        try:
            return (self.workdir / "console.log").read_text(errors="replace")
        except OSError:
            return ""


def qemu_argv(qemu: str, image_dir: Path, manifest: ImageManifest, workdir: Path) -> list[str]:
    from cargobay.hypervisors.accel import tcg_kernel_params

    cmdline = " ".join(
        [manifest.cmdline, "cargobay.name=agent-test", "pci=off", *tcg_kernel_params()]
    )
    # fmt: off
    return [
        qemu, "-machine", "microvm,accel=tcg,acpi=on,rtc=on", "-m", "384", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(image_dir / manifest.kernel.path), "-initrd", str(image_dir / "initrd.img"),
        "-append", cmdline,
        "-chardev", f"file,id=console,path={workdir}/console.log", "-serial", "chardev:console",
        "-drive", f"id=root,file={image_dir}/rootfs.ext4,format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=root,serial=cbroot",
        "-device", "virtio-serial-device,id=vser",
        "-chardev", f"socket,id=agent,path={workdir}/agent.sock,server=on,wait=off",
        "-device", f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT_NAME}",
        "-chardev", f"socket,id=qga,path={workdir}/qga.sock,server=on,wait=off",
        "-device", f"virtserialport,bus=vser.0,chardev=qga,name={QGA_PORT_NAME}",
    ]
    # fmt: on


@pytest.fixture
async def vm(default_image: tuple[Path, ImageManifest]) -> AsyncIterator[VM]:
    qemu = require_binary("qemu-system-x86_64", "Debian: apt-get install qemu-system-x86")
    image_dir, manifest = default_image
    workdir = Path(tempfile.mkdtemp(prefix="cbvm-"))
    proc = await asyncio.create_subprocess_exec(
        *qemu_argv(qemu, image_dir, manifest, workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    machine = VM(proc, workdir)
    try:
        yield machine
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        print(f"--- console of the test VM (exit {proc.returncode}):")
        print(machine.console())
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.slow
async def test_the_agent_in_a_vm(vm: VM) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not path_exists(vm.workdir / "agent.sock"):  # QEMU creates it at once
        assert vm.proc.returncode is None, vm.console()
        assert loop.time() < deadline, "QEMU made no agent socket"
        await asyncio.sleep(0.02)
    client = await wait_ready(vm.agent_address, timeout=180)
    info = client.agent_info
    assert info.pid == 1
    assert info.hostname == "agent-test"
    result = await client.exec(["sh", "-c", 'echo "$HOME ${PYTHONPATH-unset}"; tty; exit 3'])
    assert (result.exit_code, result.stdout) == (3, b"/root unset\nnot a tty\n")
    assert (await client.exec(["tty"], tty=True)).stdout.startswith(b"/dev/pts/")
    data = os.urandom(300_000)
    await client.write_file("/root/blob", data)
    back = await client.exec(["sha256sum", "/root/blob"])
    assert back.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert await client.read_file("/root/blob") == data

    # Orphans of the guest are reaped by the agent (PID 1).
    await client.exec(["sh", "-c", "for i in 1 2 3; do sleep 0.1 & done"])
    await asyncio.sleep(1)
    zombies = await client.exec(["sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status || true"])
    assert zombies.stdout == b""

    # A host that leaves in the middle of an exec: the process is killed.
    async with client.exec_stream(["sh", "-c", "echo $$; exec sleep 300"]) as proc:
        pid = int((await anext(proc)).data)
        await client.close()
    # Reconnect at once, several times: the agent may not have seen the last host leave.
    for i in range(3):
        client = await AgentClient.connect(vm.agent_address, timeout=30)
        assert (await client.exec(["echo", str(i)])).stdout == f"{i}\n".encode()
        await client.close()
    client = await AgentClient.connect(vm.agent_address, timeout=30)
    gone = await client.exec(
        [
            "sh",
            "-c",
            f"for i in $(seq 50); do [ -e /proc/{pid} ] || exit 0; sleep 0.1; done; exit 1",
        ]
    )
    assert gone.exit_code == 0, f"pid {pid} still runs in the guest"

    await client.shutdown()
    async with asyncio.timeout(60):
        assert await vm.proc.wait() == 0
    console = vm.console()
    assert "powering off now" in console
    assert "Traceback" not in console
