"""The agent channel: reconnects, junk and repeated sync requests, broken hosts, the
serial path on a real pty, shutdown, ``wait_ready``, and what the agent imports."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from cargobay.errors import GuestTimeout
from cargobay.guest.channel import AgentSync, host_sync, sync_hello, sync_request
from cargobay.guest.client import AgentClient, AgentError, wait_ready
from cargobay.guest.protocol import PROTOCOL_VERSION
from virga.connection import connect, listen
from virga.connection.serial import serial_connection_from_fd

from .conftest import SRC, AgentFactory, AgentProcess, wait_gone


async def test_reconnect_many_times(agents: AgentFactory, agent: AgentProcess) -> None:
    for i in range(5):
        client = await AgentClient.connect(agent.address)
        result = await client.exec(["echo", str(i)])
        assert result.stdout == f"{i}\n".encode()
        await client.close()
    # Two hosts at once on a Unix socket are fine too.
    first, second = await agents.client(agent), await agents.client(agent)
    assert (await first.info()).pid == (await second.info()).pid == agent.pid


async def test_junk_before_the_sync(agents: AgentFactory, agent: AgentProcess) -> None:
    conn = await connect(agent.address)
    await conn.write_all(os.urandom(5000) + b"\x00\x00\nCARGOBAY-SYNC\nCARGOBAY-SYNC-OK x 1\n")
    client = agents.track(await AgentClient.over(conn))
    assert (await client.exec(["true"])).ok


async def test_repeated_sync_requests(agents: AgentFactory, agent: AgentProcess) -> None:
    # As when a host re-sent its request while the guest was booting: the agent answers
    # once and drops the repeats instead of feeding them to yamux.
    conn = await connect(agent.address)
    await conn.write_all(sync_request(b"n0nce") * 3)
    await asyncio.sleep(0.2)
    client = agents.track(await AgentClient.over(conn, nonce=b"n0nce"))
    assert (await client.exec(["echo", "ok"])).stdout == b"ok\n"


async def test_an_abandoned_sync_then_a_new_host(agents: AgentFactory, agent: AgentProcess) -> None:
    conn = await connect(agent.address)
    await conn.write_all(sync_request(b"first"))
    await asyncio.sleep(0.1)
    client = agents.track(await AgentClient.over(conn, nonce=b"second"))
    assert (await client.exec(["true"])).ok


async def test_a_host_that_leaves_during_the_sync(
    agents: AgentFactory, agent: AgentProcess
) -> None:
    conn = await connect(agent.address)
    await conn.write_all(b"\nCARGOBAY-SY")
    await conn.close()
    client = await agents.client(agent)
    assert (await client.exec(["true"])).ok


async def test_garbage_after_the_sync_ends_only_that_session(
    agents: AgentFactory, agent: AgentProcess
) -> None:
    conn = await connect(agent.address)
    synced, version = await host_sync(conn, timeout=5)
    assert version == 1
    # A NUL byte starts yamux (see the protocol); what follows is no yamux frame.
    await synced.write_all(b"\x00\xffthis is not yamux at all" * 10)
    async with asyncio.timeout(5):  # the agent gives up on this session and closes it
        while await synced.read():
            pass
    await synced.close()
    client = await agents.client(agent)
    assert (await client.exec(["true"])).ok
    assert agent.proc.poll() is None


async def test_the_serial_path_on_a_pty(agents: AgentFactory) -> None:
    master, slave = os.openpty()
    slave_path = os.ttyname(slave)
    try:
        agent = await agents.start(f"serial:{slave_path}", wait_for_socket=False)
        await agents.wait_listening(agent)
        conn = await serial_connection_from_fd(master, "pty master")
        master = -1  # the connection owns it now
        client = agents.track(await AgentClient.over(conn, timeout=10))
        assert client.agent_info.pid == agent.pid
        data = os.urandom(2_000_000)
        result = await client.exec(["cat"], stdin=data)
        assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(data).digest()
        tty = await client.exec(["tty"], tty=True)
        assert tty.stdout.startswith(b"/dev/pts/")
        assert "listening on serial:" in agent.log()
    finally:
        os.close(slave)
        if master >= 0:
            os.close(master)


async def test_a_new_host_on_a_serial_port_the_agent_did_not_see_close(
    agents: AgentFactory,
) -> None:
    # On a serial line the agent may miss that a host left (no hang-up); the next
    # host's sync request then lands inside the old yamux session, breaks it, and the
    # agent syncs again on the re-sent request.
    master, slave = os.openpty()
    try:
        agent = await agents.start(f"serial:{os.ttyname(slave)}", wait_for_socket=False)
        await agents.wait_listening(agent)
        for i in range(3):
            conn = await serial_connection_from_fd(os.dup(master), f"pty master {i}")
            client = await AgentClient.over(conn, timeout=15)
            assert (await client.exec(["echo", str(i)])).stdout == f"{i}\n".encode()
            await client.close()  # closes a duplicate: the line stays up
        assert agent.proc.poll() is None
    finally:
        os.close(slave)
        os.close(master)


async def test_shutdown_ends_the_agent_when_not_pid_1(
    agents: AgentFactory, agent: AgentProcess
) -> None:
    client = await agents.client(agent)
    await client.shutdown()
    assert client.closed
    assert await agent.wait_exit() == 0
    assert "shutdown requested" in agent.log()


async def test_sigterm_stops_the_agent_and_its_execs(
    agents: AgentFactory, agent: AgentProcess
) -> None:
    client = await agents.client(agent)
    async with client.exec_stream(["sh", "-c", "sleep 60 & echo $!; exec sleep 60"]) as proc:
        sleeper = int((await anext(proc)).data)
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.wait_exit() == 0
        await wait_gone([proc.pid, sleeper])
        with pytest.raises(AgentError):
            await proc.wait()


async def test_wait_ready_while_the_agent_starts(agents: AgentFactory, tmp_path: Path) -> None:
    workdir = tempfile.mkdtemp(prefix="cbg-ready-")
    address = f"unix:{workdir}/agent.sock"
    try:
        waiting = asyncio.ensure_future(wait_ready(address, timeout=30, interval=0.1))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        agent = await agents.start(address, wait_for_socket=False)
        client = agents.track(await waiting)
        assert client.agent_info.pid == agent.pid
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def test_wait_ready_is_bounded(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    # Nothing there at all.
    started = loop.time()
    with pytest.raises(GuestTimeout, match="did not answer"):
        await wait_ready(f"unix:{tmp_path}/absent.sock", timeout=1.0, interval=0.1)
    assert loop.time() - started < 10
    # A socket that accepts but never answers the sync, like a QEMU chardev while the
    # guest boots; the client re-sends its request meanwhile.
    received = bytearray()
    async with await listen(f"unix:{tmp_path}/silent.sock") as listener:

        async def swallow() -> None:
            conn = await listener.accept()
            while data := await conn.read():
                received.extend(data)

        task = asyncio.ensure_future(swallow())
        with pytest.raises(GuestTimeout):
            await wait_ready(f"unix:{tmp_path}/silent.sock", timeout=2.5)
        task.cancel()
    assert received.count(b"CARGOBAY-SYNC ") >= 2


async def test_the_agent_hello_makes_the_host_resend_at_once(tmp_path: Path) -> None:
    # A fake agent that loses the first request (as QEMU drops what a closed guest port
    # would get), then opens the channel and says hello.  The host's own re-send is an
    # hour away: only the hello can get it answered in time.
    async with await listen(f"unix:{tmp_path}/fake.sock") as listener:

        async def fake_agent() -> None:
            conn = await listener.accept()
            assert (await conn.read()).strip().startswith(b"CARGOBAY-SYNC ")
            await conn.write_all(sync_hello())
            state = AgentSync()
            while state.nonce is None:
                reply = state.receive_data(await conn.read())
                if reply:
                    await conn.write_all(reply)
            await asyncio.sleep(30)

        task = asyncio.ensure_future(fake_agent())
        conn = await connect(f"unix:{tmp_path}/fake.sock")
        try:
            async with asyncio.timeout(10):
                _, version = await host_sync(
                    conn, timeout=None, resend_interval=3600, first_resend=3600
                )
            assert version == PROTOCOL_VERSION
        finally:
            task.cancel()
            await conn.close()


def test_the_agent_imports_only_the_standard_library_and_virga() -> None:
    # The guest has no third-party packages: block the ones installed here and check
    # that every module the agent loads is stdlib, virga or cargobay.guest.
    script = textwrap.dedent(
        """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {"cryptography", "pydantic", "cffi", "yaml"}:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import cargobay.guest.agent
        ours = sorted(
            m for m in sys.modules
            if m.split(".")[0] not in sys.stdlib_module_names and m != "__main__"
        )
        print("\\n".join(ours))
        """
    )
    setup = f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", setup + script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out, "nothing imported?"
    foreign = [m for m in out if m.split(".")[0] not in ("virga", "cargobay")]
    assert foreign == []
    assert "cargobay.guest.client" not in out
    assert not [m for m in out if m.startswith("cargobay.") and not m.startswith("cargobay.guest")]
