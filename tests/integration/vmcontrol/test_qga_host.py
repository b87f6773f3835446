"""The QGA client against a real qemu-ga, run on the host with a Unix-socket listener.

qemu-ga here acts on the host, so every RPC that could change the machine (shutdown,
suspend, time, fsfreeze, users, memory blocks, CPUs) is blocked with ``-b``; the tests use
only ping, info, osinfo, exec and files under a tmp dir.  The same client against
qemu-ga inside a VM is tested with the machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cargobay.errors import GuestError, GuestTimeout
from cargobay.vmcontrol.qga import QgaClient, QgaCommandError
from tests.support import require_binary

pytestmark = pytest.mark.integration

BLOCKED = ",".join(
    [
        "guest-shutdown",
        "guest-suspend-disk",
        "guest-suspend-ram",
        "guest-suspend-hybrid",
        "guest-set-time",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-freeze-list",
        "guest-fsfreeze-thaw",
        "guest-fstrim",
        "guest-set-user-password",
        "guest-set-memory-blocks",
        "guest-set-vcpus",
        "guest-ssh-add-authorized-keys",
        "guest-ssh-remove-authorized-keys",
    ]
)


@pytest.fixture
def qga_socket(tmp_path: Path) -> Iterator[Path]:
    binary = require_binary("qemu-ga", "apt-get install qemu-guest-agent")
    sock = tmp_path / "qga.sock"
    log = tmp_path / "qga.log"
    proc = subprocess.Popen(
        [
            binary,
            "-m",
            "unix-listen",
            "-p",
            str(sock),
            "-t",
            str(tmp_path),
            "-f",
            str(tmp_path / "qga.pid"),
            "-b",
            BLOCKED,
            "-l",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        # Ready once it accepts: the socket file appears at bind(), before listen(), and a
        # loaded machine can keep qemu-ga between the two for a while (a CI run hit it).
        for _ in range(1000):
            if proc.poll() is not None:
                pytest.fail(f"qemu-ga exited: {log.read_text() if log.exists() else ''}")
            if sock.exists():
                with socket.socket(socket.AF_UNIX) as probe:
                    try:
                        probe.connect(str(sock))
                        break
                    except OSError:
                        pass
            time.sleep(0.02)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def qga(qga_socket: Path) -> AsyncIterator[QgaClient]:
    client = await QgaClient.connect(f"unix:{qga_socket}", timeout=5)
    try:
        yield client
    finally:
        await client.close()


async def test_ping_info_osinfo(qga: QgaClient) -> None:
    await qga.ping()
    assert qga.synced
    info = await qga.info()
    assert info["version"].startswith("7.")
    names = {c["name"]: c["enabled"] for c in info["supported_commands"]}
    assert names["guest-ping"] is True
    assert names["guest-shutdown"] is False  # blocked in this fixture
    osinfo = await qga.get_osinfo()
    assert osinfo["kernel-release"] == os.uname().release


async def test_exec_and_status(qga: QgaClient) -> None:
    result = await qga.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.exit_code == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    true = await qga.run(["/bin/true"])
    assert true.exit_code == 0


async def test_exec_with_input(qga: QgaClient) -> None:
    result = await qga.run(["/bin/cat"], input_data=b"hello qga\n")
    assert result.stdout == b"hello qga\n"


async def test_files(qga: QgaClient, tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    data = os.urandom(200_000)
    await qga.file_write(str(target), data)
    assert target.read_bytes() == data
    assert await qga.file_read(str(target)) == data


async def test_command_error_is_typed(qga: QgaClient, tmp_path: Path) -> None:
    with pytest.raises(QgaCommandError) as info:
        await qga.file_read(str(tmp_path / "missing"))
    assert "guest-file-open" in str(info.value)
    with pytest.raises(QgaCommandError, match=r"disabled|not found"):
        await qga.execute("guest-set-time", {"time": 0})
    await qga.ping()  # still usable


async def test_resync_after_a_timeout(qga: QgaClient) -> None:
    # A reply that cannot arrive in time: the channel desyncs, then the next command
    # syncs again and the late reply is never mistaken for its answer.
    pid = await qga.exec(["/bin/sleep", "0.3"])
    with pytest.raises(GuestTimeout):
        await qga.execute("guest-exec-status", {"pid": pid}, timeout=0.0)
    assert not qga.synced
    status = await qga.exec_status(pid)
    assert "exited" in status
    assert qga.synced


async def test_reconnect_finds_the_agent_again(qga_socket: Path) -> None:
    for _ in range(3):
        async with await QgaClient.connect(f"unix:{qga_socket}", timeout=5) as client:
            await client.ping()


async def test_unreachable_agent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="cannot reach qemu-ga"):
        await QgaClient.connect(f"unix:{tmp_path}/none.sock", timeout=1)


async def test_silent_peer_times_out(tmp_path: Path) -> None:
    # A socket that accepts and never answers: sync must give up within the timeout.
    sock = tmp_path / "silent.sock"
    server = await asyncio.start_unix_server(lambda r, w: None, path=str(sock))
    try:
        client = await QgaClient.connect(f"unix:{sock}", timeout=1.5)
        with pytest.raises(GuestTimeout, match="guest-sync-delimited"):
            await client.ping()
        await client.close()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
