"""The sandbox SDK's and the MCP server's own logic, without a daemon: argument checks,
the exec-event decoder (text handed to callbacks as it comes, characters split across
chunks held back), records built from the daemon's JSON, output clipping, the bearer
guard of the HTTP transport, and the MCP tools' validation seen through the mcp SDK's
in-process client (every call here is refused before a daemon would be asked)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from cargobay.errors import DaemonError, InvalidInput
from cargobay.mcp.server import BearerGuard, build_server, is_loopback
from cargobay.mcp.tools import MAX_OUTPUT_CHARS, check_name, clip
from cargobay.paths import Paths
from cargobay.sdk.sandbox_models import (
    OutputDecoder,
    SandboxInfo,
    check_create_args,
    check_path,
    check_timeout,
    command_argv,
    encode_data,
    new_sandbox_name,
)


def out(stream: str, data: bytes) -> dict[str, Any]:
    return {"type": stream, "data_b64": base64.b64encode(data).decode()}


EXIT_0 = {"type": "exit", "exit_code": 0, "signal": None, "timed_out": False, "duration": 0.5}


# -- argument checks ----------------------------------------------------------------------


def test_command_argv() -> None:
    assert command_argv("echo hi | wc -c") == ["/bin/sh", "-c", "echo hi | wc -c"]
    assert command_argv(["ls", "-l"]) == ["ls", "-l"]
    assert command_argv(("true",)) == ["true"]
    for bad in ["", "   ", [], [""], ["ls", 3]]:
        with pytest.raises(InvalidInput):
            command_argv(bad)  # type: ignore[arg-type]


def test_check_path() -> None:
    assert check_path("/root/a b.txt") == "/root/a b.txt"
    with pytest.raises(InvalidInput, match=r"absolute, like /root/a\.txt"):
        check_path("a.txt")
    with pytest.raises(InvalidInput, match="missing path"):
        check_path("")
    with pytest.raises(InvalidInput, match="NUL"):
        check_path("/a\0b")
    with pytest.raises(InvalidInput, match="missing path"):
        check_path(None)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("", 1, 512, 2048, 10), "template"),
        ((3, 1, 512, 2048, 10), "template"),
        (("default", 0, 512, 2048, 10), "bad cpus 0"),
        (("default", 1.5, 512, 2048, 10), "bad cpus"),
        (("default", True, 512, 2048, 10), "bad cpus"),
        (("default", 1, 32, 2048, 10), "bad memory_mb 32: use a whole number, 64 or more"),
        (("default", 1, 512, "2G", 10), "bad disk_mb"),
        (("default", 1, 512, 2048, 0), "bad timeout"),
        (("default", 1, 512, 2048, "10"), "bad timeout"),
    ],
)
def test_check_create_args_refuses(args: tuple[Any, ...], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_create_args(*args)


def test_check_create_args_accepts() -> None:
    check_create_args("default", 2, 1024, 4096, 30.5)


def test_check_timeout() -> None:
    assert check_timeout(None) is None
    assert check_timeout(5) == 5.0
    for bad in (0, -1, "5", True):
        with pytest.raises(InvalidInput, match="timeout"):
            check_timeout(bad)


def test_encode_data_and_names() -> None:
    assert encode_data("é") == b"\xc3\xa9"
    assert encode_data(bytearray(b"ab")) == b"ab"
    with pytest.raises(InvalidInput, match="str or bytes"):
        encode_data(3)  # type: ignore[arg-type]
    a, b = new_sandbox_name(), new_sandbox_name()
    assert a != b
    assert a.startswith("sbx-")
    check_name(a)  # a generated name is a valid machine name


# -- the exec decoder ---------------------------------------------------------------------


def test_decoder_hands_out_text_as_it_comes() -> None:
    d = OutputDecoder()
    assert d.feed({"type": "started", "pid": 42}) is None
    assert d.feed(out("stdout", b"one\n")) == ("stdout", "one\n")
    assert d.feed(out("stderr", b"warn\n")) == ("stderr", "warn\n")
    # "é" is two bytes; split across chunks it is handed out once whole
    assert d.feed(out("stdout", b"caf\xc3")) == ("stdout", "caf")
    assert d.feed(out("stdout", b"\xa9!")) == ("stdout", "é!")
    assert d.feed(EXIT_0) is None
    assert d.flush() == []
    r = d.result()
    assert (r.stdout, r.stderr, r.exit_code, r.pid, r.duration) == (
        "one\ncafé!",
        "warn\n",
        0,
        42,
        0.5,
    )
    assert r.ok
    assert r.error is None


def test_decoder_flushes_a_cut_character_and_reports_failures() -> None:
    d = OutputDecoder()
    assert d.feed(out("stdout", b"x\xe2\x82")) == ("stdout", "x")
    d.feed({"type": "exit", "exit_code": None, "signal": 9, "timed_out": True, "duration": 1})
    assert d.flush() == [("stdout", "\ufffd")]
    r = d.result()
    assert r.stdout == "x\ufffd"
    assert (r.exit_code, r.signal, r.timed_out) == (None, 9, True)
    assert r.error == "the command timed out and was killed"
    assert not r.ok


def test_decoder_without_an_exit_event() -> None:
    d = OutputDecoder()
    d.feed(out("stdout", b"partial"))
    with pytest.raises(DaemonError, match="without its exit status"):
        d.result()


def test_sandbox_info_from_a_machine() -> None:
    machine = {
        "name": "box",
        "state": {"kind": "error", "reason": "the VM process ended"},
        "config": {"image": "default", "cpus": 2, "memory_mb": 384},
        "created_at": "2026-01-01T00:00:00Z",
    }
    info = SandboxInfo.from_machine(machine)
    assert (info.name, info.sandbox_id, info.template, info.state) == (
        "box",
        "box",
        "default",
        "error",
    )
    assert (info.cpus, info.memory_mb, info.error) == (2, 384, "the VM process ended")


# -- MCP helpers --------------------------------------------------------------------------


def test_clip_keeps_the_end() -> None:
    assert clip("short") == "short"
    long = "a" * MAX_OUTPUT_CHARS + "THE END"
    clipped = clip(long)
    assert clipped.startswith("[... 7 characters cut ...]\n")
    assert clipped.endswith("THE END")
    assert len(clipped.split("\n", 1)[1]) == MAX_OUTPUT_CHARS


def test_check_name() -> None:
    assert check_name("sbx-1.a_b") == "sbx-1.a_b"
    for bad in ("", "Box", "-x", "a/b", "x" * 64):
        with pytest.raises(InvalidInput, match="bad sandbox name"):
            check_name(bad)


def test_is_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.2", "::", "example.org"))


async def test_bearer_guard() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope.get("path", scope["type"]))

    guard = BearerGuard(app, "s3cret-token-0123456789")
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    for headers in ([], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"s3cret")]):
        sent.clear()
        await guard({"type": "http", "path": "/mcp", "headers": headers}, receive, send)
        assert sent[0]["status"] == 401
    assert reached == []
    good = [(b"authorization", b"Bearer s3cret-token-0123456789")]
    await guard({"type": "http", "path": "/mcp", "headers": good}, receive, send)
    await guard({"type": "lifespan"}, receive, send)  # not HTTP: passed through
    assert reached == ["/mcp", "lifespan"]


# -- the MCP tools through the SDK's in-process client ------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Any:
    # autostart off and an empty home: a call that got as far as the daemon would fail
    # with "cargobayd is not running", so each refusal below is the tool's own check
    return build_server(Paths.from_env({"CARGOBAY_HOME": str(tmp_path)}), autostart=False)


async def test_tools_and_their_schemas(server: Any) -> None:
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {
        "create_sandbox",
        "list_sandboxes",
        "start_sandbox",
        "stop_sandbox",
        "delete_sandbox",
        "run_command",
        "read_file",
        "write_file",
        "list_files",
    }
    assert tools["run_command"].input_schema["required"] == ["name", "command"]
    assert tools["create_sandbox"].input_schema["properties"]["cpus"]["minimum"] == 1
    assert tools["read_file"].output_schema is not None
    assert all(t.description for t in tools.values())


@pytest.mark.parametrize(
    ("tool", "arguments", "words"),
    [
        ("read_file", {"name": "box", "path": "etc/hostname"}, "sandbox paths are absolute"),
        ("list_files", {"name": "box", "path": "tmp"}, "sandbox paths are absolute"),
        ("write_file", {"name": "box", "path": "/x", "content": "%%", "encoding": "base64"},
         "not valid base64"),
        ("run_command", {"name": "Bad Name", "command": "true"}, "bad sandbox name 'Bad Name'"),
        ("run_command", {"name": "box", "command": ""}, "command"),
        ("run_command", {"name": "box", "command": "x", "timeout": 0}, "timeout"),
        ("create_sandbox", {"cpus": 0}, "cpus"),
        ("create_sandbox", {"memory_mb": 1}, "memory_mb"),
        ("create_sandbox", {"name": "UPPER"}, "bad sandbox name"),
        ("read_file", {"name": "box", "path": "/x", "encoding": "latin-1"}, "encoding"),
        ("delete_sandbox", {}, "name"),
    ],
)  # fmt: skip
async def test_bad_arguments_are_tool_errors(
    server: Any, tool: str, arguments: dict[str, Any], words: str
) -> None:
    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    message = " ".join(getattr(b, "text", "") for b in result.content)
    assert words in message
    assert "cargobayd is not running" not in message
