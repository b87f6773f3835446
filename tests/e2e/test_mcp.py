"""``cargobay mcp`` driven by the official ``mcp`` SDK's own client, over stdio (the
client spawns the command) and over streamable HTTP on 127.0.0.1 (with a bearer token),
against a real cargobayd (started by the server on first use) and real VMs from the
default image: list tools, create a sandbox, run ``echo``, write/read/list files (text
and binary), see errors come back as tool errors, stop and delete it."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from cargobay.images import ImageManifest
from cargobay.paths import Paths
from cargobay.sdk import daemon_environment
from tests.integration.sdk.home import sandbox_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOOLS = {
    "create_sandbox",
    "list_sandboxes",
    "stop_sandbox",
    "delete_sandbox",
    "run_command",
    "read_file",
    "write_file",
    "list_files",
}
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def cargobay_command() -> list[str]:
    script = Path(sys.executable).parent / "cargobay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cargobay.cli"]


@pytest.fixture(scope="module")
def home(default_image: tuple[Path, ImageManifest]) -> Iterator[Paths]:
    with sandbox_home(default_image[0]) as paths:
        yield paths


def server_env(paths: Paths) -> dict[str, str]:
    env = daemon_environment(paths)
    env.pop("CARGOBAY_AUTOSTART", None)
    for var in PROXY_VARS:  # loopback only
        env.pop(var, None)
    return env


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A successful tool call's structured result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    assert result.structured_content is not None, tool
    return dict(result.structured_content)


async def call_fails(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {result}"
    return text_of(result)


async def exercise(client: Client, name: str) -> None:
    listed = await client.list_tools()
    assert {t.name for t in listed.tools} >= TOOLS
    created = await call(client, "create_sandbox", name=name, memory_mb=384)
    assert (created["name"], created["state"], created["template"]) == (name, "running", "default")
    try:
        names = [s["name"] for s in (await call(client, "list_sandboxes"))["sandboxes"]]
        assert name in names

        out = await call(client, "run_command", name=name, command="echo hello from mcp; exit 4")
        assert (out["exit_code"], out["stdout"], out["timed_out"]) == (4, "hello from mcp\n", False)
        out = await call(
            client, "run_command", name=name, command="echo $X; pwd", cwd="/tmp", env={"X": "y"}
        )
        assert out["stdout"] == "y\n/tmp\n"

        written = await call(
            client, "write_file", name=name, path="/root/mcp/note.txt", content="from mcp\n"
        )
        assert written == {"path": "/root/mcp/note.txt", "bytes_written": 9}
        read = await call(client, "read_file", name=name, path="/root/mcp/note.txt")
        assert (read["content"], read["encoding"], read["size"]) == ("from mcp\n", "utf-8", 9)
        blob = bytes(range(256))
        await call(
            client,
            "write_file",
            name=name,
            path="/root/mcp/blob",
            content=base64.b64encode(blob).decode(),
            encoding="base64",
        )
        read = await call(client, "read_file", name=name, path="/root/mcp/blob", encoding="base64")
        assert base64.b64decode(read["content"]) == blob
        listing = await call(client, "list_files", name=name, path="/root/mcp")
        entries = {e["name"]: e for e in listing["entries"]}
        assert entries["note.txt"] == {"name": "note.txt", "type": "file", "size": 9}
        assert entries["blob"]["size"] == 256

        # errors are tool results the model can read, and the server keeps serving
        message = await call_fails(client, "read_file", name=name, path="/root/mcp/blob")
        assert "not UTF-8" in message
        assert "base64" in message
        message = await call_fails(client, "read_file", name=name, path="/root/none.txt")
        assert "/root/none.txt" in message
        message = await call_fails(client, "run_command", name="ghost", command="true")
        assert "ghost" in message
        message = await call_fails(client, "create_sandbox", template="nope")
        assert "unknown sandbox template 'nope'" in message

        stopped = await call(client, "stop_sandbox", name=name)
        assert stopped["state"] == "stopped"
        message = await call_fails(client, "run_command", name=name, command="true")
        assert "stopped" in message
    finally:
        result = await client.call_tool("delete_sandbox", {"name": name})
        assert not result.is_error, text_of(result)
    names = [s["name"] for s in (await call(client, "list_sandboxes"))["sandboxes"]]
    assert name not in names


async def test_mcp_over_stdio(home: Paths) -> None:
    command = cargobay_command()
    params = StdioServerParameters(
        command=command[0], args=[*command[1:], "mcp"], env=server_env(home)
    )
    with (home.state / "mcp-stdio.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await exercise(client, "mcp-stdio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(paths: Paths, token_file: Path) -> Iterator[str]:
    port = free_port()
    log_path = paths.state / "mcp-http.log"
    with log_path.open("wb") as log:
        argv = [*cargobay_command(), "mcp", "--transport", "http", "--port", str(port)]
        proc = subprocess.Popen(
            [*argv, "--token-file", str(token_file)],
            env=server_env(paths),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "cargobay mcp did not listen within 30 s"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log_path.read_text(errors="replace")[-4000:])


async def test_mcp_over_streamable_http(home: Paths, tmp_path: Path) -> None:
    token = base64.b32encode(os.urandom(20)).decode()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    with http_server(home, token_file) as url:
        # without the token: refused before MCP sees the request
        async with httpx.AsyncClient(trust_env=False) as plain:
            answer = await plain.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert answer.status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx2.Timeout(30.0, read=300.0)
        async with (
            httpx2.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            await exercise(client, "mcp-http")


def test_http_off_loopback_needs_a_token(home: Paths) -> None:
    proc = subprocess.run(
        [*cargobay_command(), "mcp", "--transport", "http", "--host", "0.0.0.0"],
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("error: --host 0.0.0.0 is reachable from other machines"), proc
