"""The sandbox SDK against a real cargobayd (started by the SDK itself) and real VMs
booted from the default image: ``Sandbox`` (one VM shared by the sync tests) and
``AsyncSandbox`` (its own VM: create, use, kill), plus ``connect``/``list`` and the errors
a user meets (unknown template, missing file, relative path, a failing command)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargobay.errors import CommandExitError, InvalidInput, NotFound, TemplateNotFound
from cargobay.images import ImageManifest
from cargobay.paths import Paths
from cargobay.sdk import AsyncSandbox, Sandbox
from tests.integration.sdk.home import sandbox_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MEMORY_MB = 384
# every byte value, to see that binary files survive the round trip
BINARY = bytes(range(256)) * 3


@pytest.fixture(scope="module")
def home(default_image: tuple[Path, ImageManifest]) -> Iterator[Paths]:
    with sandbox_home(default_image[0]) as paths:
        yield paths


@pytest.fixture(scope="module")
def sbx(home: Paths) -> Iterator[Sandbox]:
    sandbox = Sandbox.create(name="sdk-sync", memory_mb=MEMORY_MB, disk_mb=256, paths=home)
    try:
        yield sandbox
    finally:
        sandbox.kill()
        sandbox.close()


def test_create_boots_a_running_sandbox(sbx: Sandbox, home: Paths) -> None:
    assert sbx.name == sbx.sandbox_id == "sdk-sync"
    assert sbx.template == "default"
    assert sbx.is_running()
    info = sbx.info()
    assert (info.state, info.template, info.memory_mb) == ("running", "default", MEMORY_MB)
    assert [s.name for s in Sandbox.list(paths=home)] == ["sdk-sync"]


def test_run_streams_output_while_the_command_runs(sbx: Sandbox) -> None:
    """The command waits for a file that the stdout callback writes when it sees "ready":
    it can only finish if its first line reached the callback while it was running."""
    sbx.files.write("/tmp/go", b"")  # (a leftover of an earlier run would cheat)
    sbx.commands.run("rm -f /tmp/go")
    seen: list[tuple[str, str]] = []

    def on_stdout(text: str) -> None:
        seen.append(("out", text))
        if "ready" in text:
            sbx.files.write("/tmp/go", "1")

    result = sbx.commands.run(
        "echo ready; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo warn >&2; echo done; exit 3",
        on_stdout=on_stdout,
        on_stderr=lambda text: seen.append(("err", text)),
        timeout=60,
    )
    assert not result.timed_out, result
    assert result.exit_code == 3
    assert result.stdout == "ready\ndone\n"
    assert result.stderr == "warn\n"
    assert "".join(t for k, t in seen if k == "out") == "ready\ndone\n"
    assert "".join(t for k, t in seen if k == "err") == "warn\n"
    assert result.error == "the command exited with 3"


def test_run_options(sbx: Sandbox) -> None:
    r = sbx.commands.run(
        ["sh", "-c", 'echo "$GREETING from $(pwd)"'], env={"GREETING": "hi"}, cwd="/tmp"
    )
    assert (r.exit_code, r.stdout) == (0, "hi from /tmp\n")
    assert sbx.commands.run("cat", stdin="piped\n").stdout == "piped\n"
    assert sbx.commands.run("printf 'caf\\303\\251'").stdout == "café"
    slow = sbx.commands.run("sleep 30", timeout=1)
    assert slow.timed_out
    assert not slow.ok
    with pytest.raises(CommandExitError, match="exited with 2") as info:
        sbx.commands.run("echo oops >&2; exit 2", check=True)
    assert "oops" in str(info.value)
    with pytest.raises(InvalidInput, match="empty command"):
        sbx.commands.run("  ")


def test_files_round_trip(sbx: Sandbox) -> None:
    info = sbx.files.write("/root/work/notes/hello.txt", "héllo\n")  # parents are made
    assert (info.name, info.bytes_written) == ("hello.txt", len("héllo\n".encode()))
    assert sbx.files.read("/root/work/notes/hello.txt") == "héllo\n"
    sbx.files.write("/root/work/blob.bin", BINARY)
    assert sbx.files.read("/root/work/blob.bin", format="bytes") == BINARY
    # what the guest sees is what was written
    md5 = sbx.commands.run("md5sum < /root/work/blob.bin").stdout.split()[0]
    assert md5 == hashlib.md5(BINARY).hexdigest()
    entries = {e.name: e for e in sbx.files.list("/root/work")}
    assert set(entries) == {"notes", "blob.bin"}
    assert entries["notes"].type == "dir"
    assert (entries["blob.bin"].type, entries["blob.bin"].size) == ("file", len(BINARY))
    sbx.files.write("/root/work/blob.bin", "short", mode=0o600)  # replaced whole
    assert sbx.files.read("/root/work/blob.bin") == "short"
    assert {e.name: e.mode for e in sbx.files.list("/root/work")}["blob.bin"] == 0o600


def test_file_errors(sbx: Sandbox) -> None:
    with pytest.raises(NotFound, match="/root/missing"):
        sbx.files.read("/root/missing")
    with pytest.raises(InvalidInput, match="directory"):
        sbx.files.read("/root")
    with pytest.raises(NotFound):
        sbx.files.list("/no/such/dir")
    with pytest.raises(InvalidInput, match="absolute"):
        sbx.files.write("relative.txt", "x")


def test_unknown_template_is_a_clear_error(home: Paths) -> None:
    with pytest.raises(TemplateNotFound, match=r"unknown sandbox template 'nope'.*default"):
        Sandbox.create("nope", paths=home)
    with pytest.raises(InvalidInput, match="cpus"):
        Sandbox.create(cpus=0, paths=home)


def test_connect_attaches_to_a_running_sandbox(sbx: Sandbox, home: Paths) -> None:
    other = Sandbox.connect(sbx.name, paths=home)
    try:
        assert other.template == "default"
        assert other.commands.run("cat /root/work/notes/hello.txt").stdout == "héllo\n"
    finally:
        other.close()  # closing a connection leaves the sandbox running
    assert sbx.is_running()
    with pytest.raises(NotFound):
        Sandbox.connect("ghost", paths=home)


async def test_async_sandbox_lifecycle(home: Paths) -> None:
    chunks: list[str] = []

    async def on_stdout(text: str) -> None:
        chunks.append(text)

    async with await AsyncSandbox.create(
        name="sdk-async", memory_mb=MEMORY_MB, disk_mb=256, paths=home
    ) as sbx:
        assert await sbx.is_running()
        assert "sdk-async" in [s.name for s in await AsyncSandbox.list(paths=home)]
        result = await sbx.commands.run(
            "for i in 1 2 3; do echo line $i; done; echo err >&2",
            on_stdout=on_stdout,
            on_stderr=chunks.append,  # a plain function works too
        )
        assert result.ok
        assert result.stdout == "line 1\nline 2\nline 3\n"
        # stdout and stderr are separate streams: their relative order is not fixed
        assert sorted("".join(chunks).splitlines()) == ["err", "line 1", "line 2", "line 3"]
        await sbx.files.write("/srv/data/a.txt", "async")
        assert await sbx.files.read("/srv/data/a.txt") == "async"
        assert [e.name for e in await sbx.files.list("/srv/data")] == ["a.txt"]
        assert await sbx.files.read("/srv/data/a.txt", format="bytes") == b"async"
    # leaving the block killed it
    assert "sdk-async" not in [s.name for s in await AsyncSandbox.list(paths=home)]


def test_kill_removes_the_sandbox(sbx: Sandbox, home: Paths) -> None:
    assert sbx.kill() is True
    assert not sbx.is_running()
    assert [s.name for s in Sandbox.list(paths=home)] == []
    assert sbx.kill() is False
