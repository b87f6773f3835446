"""exec through the real agent (a host subprocess) and the client."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cargobay.errors import GuestError
from cargobay.guest.channel import read_frame, write_frame
from cargobay.guest.client import AgentClient, AgentError, Output
from cargobay.guest.protocol import (
    EXIT_OUTPUT_GRACE,
    PROTOCOL_VERSION,
    ExecRequest,
    Kind,
    encode_request,
)

from .conftest import AgentFactory, AgentProcess, pid_exists, wait_gone


async def test_info_handshake(client: AgentClient, agent: AgentProcess) -> None:
    info = client.agent_info
    assert info.protocol == PROTOCOL_VERSION
    assert info.pid == agent.pid
    assert info.hostname == os.uname().nodename
    assert info.kernel == os.uname().release
    assert info.uptime > 0
    again = await client.info()
    assert again.pid == agent.pid
    assert again.uptime >= info.uptime


async def test_protocol_mismatch_is_refused(agents: AgentFactory, agent: AgentProcess) -> None:
    with pytest.raises(AgentError, match="protocol") as info:
        await AgentClient.connect(agent.address, protocol_version=PROTOCOL_VERSION + 1)
    assert info.value.kind == "protocol"
    assert isinstance(info.value, GuestError)
    # The agent itself refuses an info request with another protocol number.
    client = await agents.client(agent)
    stream = await client.session.open_stream()
    await write_frame(stream, Kind.REQUEST, json.dumps({"op": "info", "protocol": 99}).encode())
    frame = await read_frame(stream)
    assert frame is not None
    assert frame[0] == Kind.ERROR
    assert json.loads(frame[1])["kind"] == "protocol"


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42), (["sh", "-c", "exit 255"], 255)],
)
async def test_exit_codes(client: AgentClient, argv: list[str], code: int) -> None:
    result = await client.exec(argv)
    assert result.exit_code == code
    assert result.returncode == code
    assert result.signal is None
    assert result.ok is (code == 0)
    assert not result.timed_out
    assert result.duration >= 0
    assert result.pid > 0  # from EXIT: exec() asks for no STARTED
    assert result.stdout == result.stderr == b""


async def test_stdout_and_stderr_are_separate_and_ordered(client: AgentClient) -> None:
    script = "for i in $(seq 1 2000); do echo out$i; echo err$i >&2; done"
    result = await client.exec(["sh", "-c", script])
    assert result.ok
    assert result.stdout.decode().split() == [f"out{i}" for i in range(1, 2001)]
    assert result.stderr.decode().split() == [f"err{i}" for i in range(1, 2001)]


async def test_large_output_arrives_intact(client: AgentClient, tmp_path: Path) -> None:
    data = os.urandom(20_000_000)
    source = tmp_path / "big"
    source.write_bytes(data)
    result = await client.exec(["head", "-c", str(len(data)), str(source)])
    assert result.ok
    assert len(result.stdout) == len(data)
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(data).digest()


async def test_stdin_round_trip(client: AgentClient) -> None:
    data = os.urandom(3_000_000)
    result = await client.exec(["cat"], stdin=data)
    assert result.ok
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(data).digest()


async def test_stdin_from_an_async_iterator(client: AgentClient) -> None:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(100):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0)

    result = await client.exec(["wc", "-l"], stdin=lines())
    assert result.stdout.strip() == b"100"


async def test_without_stdin_the_process_reads_dev_null(client: AgentClient) -> None:
    result = await client.exec(["cat"])
    assert result.ok
    assert result.stdout == b""


async def test_env_and_cwd(client: AgentClient, tmp_path: Path) -> None:
    result = await client.exec(
        ["sh", "-c", 'echo "$CB_ONE|$CB_TWO"; pwd'],
        env={"CB_ONE": "1", "CB_TWO": "two words"},
        cwd=str(tmp_path),
    )
    assert result.stdout.decode().splitlines() == ["1|two words", str(tmp_path)]
    # The request's env is added to the agent's: PATH is still there.
    path = await client.exec(["sh", "-c", "echo $PATH"])
    assert "/bin" in path.stdout.decode()


async def test_both_spawn_paths_give_the_same_process_setup(
    client: AgentClient, tmp_path: Path
) -> None:
    """Without cwd/tty the agent spawns with posix_spawn, otherwise through subprocess;
    either way the program runs in a new session with SIGPIPE back at its default (the
    agent's Python ignores it) and PATH searched in the child's environment."""
    script = "ps -o sid= -p $$; echo $$; grep SigIgn /proc/self/status"
    fast = await client.exec(["sh", "-c", script])
    slow = await client.exec(["sh", "-c", script], cwd=str(tmp_path))
    for result in (fast, slow):
        sid, pid, sigign = result.stdout.decode().split("\n")[:3]
        assert sid.strip() == pid.strip()  # session leader
        assert not int(sigign.split()[1], 16) & (1 << (signal.SIGPIPE - 1))
    tool = tmp_path / "cb-only-here"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    found = await client.exec(["cb-only-here"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert found.stdout == b"found\n"


async def test_signal_ends_the_process(client: AgentClient) -> None:
    async with client.exec_stream(["sh", "-c", "echo ready; exec sleep 30"]) as proc:
        first = await anext(proc)
        assert first == Output("stdout", b"ready\n")
        await proc.signal(signal.SIGTERM)
        status = await proc.wait()
    assert status.signal == signal.SIGTERM
    assert status.exit_code is None
    assert status.returncode == 128 + signal.SIGTERM
    assert not status.timed_out


async def test_signal_to_the_group(client: AgentClient) -> None:
    script = "sleep 30 & echo $!; wait"
    async with client.exec_stream(["sh", "-c", script]) as proc:
        sleeper = int((await anext(proc)).data)
        await proc.signal(signal.SIGTERM, group=True)
        status = await proc.wait()
    assert status.signal == signal.SIGTERM
    await wait_gone([sleeper])


async def test_timeout_kills_the_whole_process_group(client: AgentClient) -> None:
    script = "sleep 60 & echo $!; sleep 60"
    result = await client.exec(["sh", "-c", script], timeout=1.0)
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert result.exit_code is None
    assert 1.0 <= result.duration < 30
    await wait_gone([int(result.stdout)])


async def test_tty(client: AgentClient) -> None:
    result = await client.exec(["tty"], tty=True)
    assert result.ok
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", result.stdout)
    assert result.stderr == b""
    size = await client.exec(["stty", "size"], tty=True, rows=33, cols=111)
    assert size.stdout.strip() == b"33 111"
    term = await client.exec(["sh", "-c", "echo $TERM"], tty=True)
    assert term.stdout.strip() == b"xterm-256color"
    # Without a TTY, stdin is not a terminal.
    plain = await client.exec(["tty"])
    assert plain.exit_code == 1


async def test_tty_resize_and_input(client: AgentClient) -> None:
    script = "trap 'echo WINCH' WINCH; echo ready; read line; echo got:$line; stty size"
    async with client.exec_stream(["bash", "-c", script], stdin=True, tty=True) as proc:
        output = b""
        while b"ready" not in output:
            output += (await anext(proc)).data
        await proc.resize(50, 132)  # the foreground group gets SIGWINCH
        await asyncio.sleep(0.2)
        await proc.send_stdin(b"hello\n")
        async for chunk in proc:
            assert chunk.stream == "stdout"
            output += chunk.data
        status = await proc.wait()
    assert status.ok
    text = output.decode()
    assert "WINCH" in text
    assert "got:hello" in text
    assert "50 132" in text


async def test_tty_close_stdin_sends_eof(client: AgentClient) -> None:
    async with client.exec_stream(["cat"], stdin=True, tty=True) as proc:
        await proc.send_stdin(b"abc\n")
        await proc.close_stdin()
        status = await proc.wait()
    assert status.ok


@pytest.mark.parametrize(
    ("argv", "number"),
    [(["/nonexistent/program"], errno.ENOENT), (["no-such-program-cb"], errno.ENOENT)],
)
async def test_missing_program(client: AgentClient, argv: list[str], number: int) -> None:
    with pytest.raises(AgentError) as info:
        await client.exec(argv)
    assert info.value.kind == "exec"
    assert info.value.errno == number
    assert argv[0] in str(info.value)


async def test_program_that_is_not_executable(client: AgentClient, tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(AgentError) as info:
        await client.exec([str(script)])
    assert (info.value.kind, info.value.errno) == ("exec", errno.EACCES)


async def test_bad_cwd(client: AgentClient, tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="nope") as info:
        await client.exec(["true"], cwd=str(tmp_path / "nope"))
    assert (info.value.kind, info.value.errno) == ("exec", errno.ENOENT)
    with pytest.raises(AgentError) as relative:
        await client.exec(["true"], cwd="relative")
    assert relative.value.kind == "invalid"


async def test_many_concurrent_execs(client: AgentClient) -> None:
    async def one(i: int) -> bytes:
        result = await client.exec(["sh", "-c", 'sleep 0.2; echo "$0"', f"n{i}"])
        assert result.ok
        return result.stdout

    outputs = await asyncio.gather(*(one(i) for i in range(20)))
    assert outputs == [f"n{i}\n".encode() for i in range(20)]


async def test_orphans_are_reaped(client: AgentClient, agent: AgentProcess) -> None:
    # sh exits at once; its background children are re-parented to the agent (a child
    # subreaper when not PID 1) and must be reaped by it when they exit.
    result = await client.exec(["sh", "-c", "for i in 1 2 3; do sleep 0.2 & done; echo $!"])
    assert result.ok
    await wait_gone([int(result.stdout)])
    await asyncio.sleep(0.3)
    assert agent.zombie_children() == []


async def test_background_output_holder_does_not_block_exit(client: AgentClient) -> None:
    # The background sleep keeps stdout open; EXIT comes after the output grace and
    # the sleep is left running.
    async with asyncio.timeout(EXIT_OUTPUT_GRACE + 10):
        result = await client.exec(["sh", "-c", "sleep 30 & echo $!"])
    assert result.ok
    sleeper = int(result.stdout)
    assert pid_exists(sleeper)
    os.kill(sleeper, signal.SIGKILL)
    await wait_gone([sleeper])


async def test_backpressure_bounds_agent_memory(client: AgentClient, agent: AgentProcess) -> None:
    size = 96 * 1024 * 1024
    async with client.exec_stream(["head", "-c", str(size), "/dev/zero"]) as proc:
        first = await anext(proc)
        before = agent.rss_kib()
        await asyncio.sleep(1.0)  # the process could write all 96 MiB in this time
        grown = agent.rss_kib() - before
        total = len(first.data)
        async for chunk in proc:
            total += len(chunk.data)
        status = await proc.wait()
    assert status.ok
    assert total == size
    assert grown < 16 * 1024, f"the agent grew by {grown} KiB while nobody read"


async def test_leaving_exec_stream_early_kills_the_process(client: AgentClient) -> None:
    async with client.exec_stream(["sh", "-c", "echo $$; exec sleep 30"]) as proc:
        pid = int((await anext(proc)).data)
        assert proc.pid == pid
    await wait_gone([pid])
    assert (await client.exec(["true"])).ok


async def test_host_disconnect_mid_exec_kills_it(agents: AgentFactory, agent: AgentProcess) -> None:
    client = await agents.client(agent)
    cm = client.exec_stream(["sh", "-c", "sleep 30 & echo $!; exec sleep 30"])
    proc = await cm.__aenter__()
    sleeper = int((await anext(proc)).data)
    await client.close()  # the whole connection goes away, mid-exec
    await wait_gone([proc.pid, sleeper])
    await cm.__aexit__(None, None, None)
    with pytest.raises(AgentError):
        await proc.wait()
    again = await agents.client(agent)
    assert (await again.exec(["echo", "still here"])).stdout == b"still here\n"
    assert agent.proc.poll() is None


async def test_a_bad_request_gets_an_error_and_the_agent_keeps_serving(
    client: AgentClient,
) -> None:
    async def raw(*frames: tuple[bytes, bytes]) -> tuple[bytes, dict[str, object]]:
        stream = await client.session.open_stream()
        for kind, payload in frames:
            await write_frame(stream, kind, payload)
        frame = await read_frame(stream)
        assert frame is not None
        await stream.close()
        return frame[0], json.loads(frame[1])

    kind, error = await raw((Kind.REQUEST, b"not json"))
    assert (kind, error["kind"]) == (Kind.ERROR, "protocol")
    kind, error = await raw((Kind.REQUEST, b'{"op": "launch-missiles"}'))
    assert (kind, error["kind"]) == (Kind.ERROR, "protocol")
    kind, error = await raw((Kind.STDIN, b"hello"))
    assert (kind, error["kind"]) == (Kind.ERROR, "protocol")
    kind, error = await raw((Kind.REQUEST, b'{"op": "exec", "argv": []}'))
    assert (kind, error["kind"]) == (Kind.ERROR, "invalid")
    # A malformed frame header (unknown kind) on its own stream.
    stream = await client.session.open_stream()
    await stream.write(b"?\x00\x00\x00\x00")
    frame = await read_frame(stream)
    assert frame is not None
    assert frame[0] == Kind.ERROR
    assert (await client.exec(["true"])).ok


async def test_bad_frames_during_an_exec_are_ignored(client: AgentClient) -> None:
    async with client.exec_stream(["sh", "-c", "read x; echo got $x"], stdin=True) as proc:
        stream = proc._stream
        await write_frame(stream, Kind.SIGNAL, b'{"signal": "TERM"}')
        await write_frame(stream, Kind.RESIZE, b'{"rows": 1, "cols": 1}')  # no TTY
        await write_frame(stream, Kind.DATA, b"misplaced")
        await proc.send_stdin(b"fine\n")
        await proc.close_stdin()
        output = b"".join([chunk.data async for chunk in proc])
        status = await proc.wait()
    assert status.ok
    assert output == b"got fine\n"


async def test_started_can_be_left_out(client: AgentClient) -> None:
    stream = await client.session.open_stream()
    await stream.write(encode_request(ExecRequest(argv=("echo", "hi"), started=False)))
    frames = []
    while (frame := await read_frame(stream)) is not None:
        frames.append(frame)
    await stream.close()
    assert [kind for kind, _ in frames] == [Kind.STDOUT, Kind.EXIT]
    assert frames[0][1] == b"hi\n"
    exit_ = json.loads(frames[1][1])
    assert exit_["exit_code"] == 0
    assert exit_["pid"] > 0


async def test_stdin_after_end_does_not_block_signals(client: AgentClient) -> None:
    async with client.exec_stream(
        ["sh", "-c", "cat; echo done; exec sleep 30"], stdin=True
    ) as proc:
        await proc.send_stdin(b"x")
        await proc.close_stdin()
        output = b""
        while b"done" not in output:
            output += (await anext(proc)).data
        for _ in range(40):  # a misbehaving host: input after END is dropped
            await write_frame(proc._stream, Kind.STDIN, b"late")
        await proc.signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            status = await proc.wait()
    assert status.signal == signal.SIGTERM
