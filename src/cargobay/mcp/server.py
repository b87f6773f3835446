"""``cargobay mcp``: an MCP server (official ``mcp`` SDK) that gives a model sandboxes.

    cargobay mcp                                   # stdio (what MCP clients spawn)
    cargobay mcp --transport http --port 8765      # streamable HTTP on 127.0.0.1:8765/mcp

Tools: create_sandbox, list_sandboxes, start_sandbox, stop_sandbox, delete_sandbox,
run_command, read_file, write_file, list_files (``tools.py`` says what each does and
how errors come back).  The server reaches CargoBay only through ``cargobay.sdk`` and
the daemon, which it starts on first use like the CLI does.

Over HTTP the server listens on loopback by default.  Any other address needs a token
(``--token-file``, or ``CARGOBAY_MCP_TOKEN``): each request must then carry
``Authorization: Bearer <token>`` (compared in constant time), since whoever reaches the
port can run commands in the sandboxes.  On stdio, stdout carries only the protocol;
logs go to stderr.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

import cargobay
from cargobay.errors import InvalidInput
from cargobay.mcp.tools import (
    CommandOutput,
    FileContent,
    FileListing,
    SandboxList,
    SandboxSummary,
    SandboxTools,
    WrittenFile,
)
from cargobay.paths import Paths

__all__ = ["BearerGuard", "build_server", "is_loopback", "serve_http", "serve_stdio"]

INSTRUCTIONS = (
    "CargoBay sandboxes are lightweight Linux VMs on this machine. create_sandbox boots one "
    "(a few seconds) and returns its name; pass that name to run_command, read_file, "
    "write_file and list_files. Paths in a sandbox are absolute. delete_sandbox removes it "
    "when you are done."
)

SandboxName = Annotated[str, Field(description="The sandbox's name (see list_sandboxes).")]
GuestPath = Annotated[str, Field(description="Absolute path in the sandbox, like /root/a.txt.")]
Encoding = Annotated[
    Literal["utf-8", "base64"],
    Field(description="utf-8 for text; base64 for binary content."),
]


def build_server(paths: Paths | None = None, *, autostart: bool | None = None) -> MCPServer:
    """The MCP server with the sandbox tools registered (not yet running)."""
    tools = SandboxTools(paths, autostart=autostart)

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await tools.close()

    server: MCPServer = MCPServer(
        "cargobay",
        instructions=INSTRUCTIONS,
        version=cargobay.__version__,
        lifespan=lifespan,
        log_level="WARNING",
    )

    @server.tool()
    async def create_sandbox(
        template: Annotated[
            str, Field(description="Image to boot; 'default' is the built-in one.")
        ] = "default",
        name: Annotated[
            str | None, Field(description="Name for it (default: sbx-XXXXXXXX).")
        ] = None,
        cpus: Annotated[int, Field(ge=1, le=64, description="Virtual CPUs.")] = 1,
        memory_mb: Annotated[int, Field(ge=64, description="Memory in MiB.")] = 512,
    ) -> SandboxSummary:
        """Create and boot a sandbox (a Linux VM); returns its name and state."""
        return await tools.create_sandbox(template, name, cpus, memory_mb)

    @server.tool()
    async def list_sandboxes() -> SandboxList:
        """List every sandbox with its state."""
        return await tools.list_sandboxes()

    @server.tool()
    async def start_sandbox(name: SandboxName) -> SandboxSummary:
        """Boot a stopped sandbox again (its files are kept)."""
        return await tools.start_sandbox(name)

    @server.tool()
    async def stop_sandbox(name: SandboxName) -> SandboxSummary:
        """Shut a sandbox down, keeping its files (start_sandbox boots it again)."""
        return await tools.stop_sandbox(name)

    @server.tool()
    async def delete_sandbox(name: SandboxName) -> str:
        """Stop a sandbox and remove it with its files."""
        return await tools.delete_sandbox(name)

    @server.tool()
    async def run_command(
        name: SandboxName,
        command: Annotated[str, Field(min_length=1, description="A /bin/sh command line.")],
        timeout: Annotated[
            float | None, Field(gt=0, le=3600, description="Seconds before it is killed (60).")
        ] = None,
        cwd: Annotated[str | None, Field(description="Absolute working directory.")] = None,
        env: Annotated[
            dict[str, str] | None, Field(description="Extra environment variables.")
        ] = None,
    ) -> CommandOutput:
        """Run a shell command in a sandbox; returns exit code, stdout and stderr."""
        return await tools.run_command(name, command, timeout, cwd, env)

    @server.tool()
    async def read_file(
        name: SandboxName, path: GuestPath, encoding: Encoding = "utf-8"
    ) -> FileContent:
        """Read a file from a sandbox (64 MiB at most)."""
        return await tools.read_file(name, path, encoding)

    @server.tool()
    async def write_file(
        name: SandboxName,
        path: GuestPath,
        content: Annotated[str, Field(description="The file's new contents.")],
        encoding: Encoding = "utf-8",
    ) -> WrittenFile:
        """Create or replace a file in a sandbox (parent directories are created)."""
        return await tools.write_file(name, path, content, encoding)

    @server.tool()
    async def list_files(name: SandboxName, path: GuestPath = "/") -> FileListing:
        """List a directory in a sandbox."""
        return await tools.list_files(name, path)

    return server


# -- transports ---------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerGuard:
    """Lets an HTTP request through only with ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = b'{"error": "missing or wrong bearer token"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve_stdio(server: MCPServer) -> None:
    server.run("stdio")


def serve_http(server: MCPServer, host: str, port: int, token: str | None) -> None:
    """Streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted."""
    import anyio
    import uvicorn

    if not is_loopback(host) and not token:
        raise InvalidInput(
            f"--host {host} is reachable from other machines: give a token with "
            "--token-file FILE (or CARGOBAY_MCP_TOKEN); clients then send "
            "'Authorization: Bearer <token>'"
        )
    app: ASGIApp = server.streamable_http_app(host=host)
    if token:
        app = BearerGuard(app, token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve)
