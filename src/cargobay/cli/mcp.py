"""``cargobay mcp``: serve CargoBay sandboxes to MCP clients (``cargobay.mcp.server``).

    cargobay mcp                                     # stdio: for clients that spawn it
    cargobay mcp --transport http [--host 127.0.0.1] [--port 8765] [--token-file F]

An MCP client configuration names the command, e.g. ``{"command": "cargobay", "args":
["mcp"]}``.  With stdio, stdout is the protocol's; nothing else is printed there.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cargobay.cli.session import current_paths
from cargobay.errors import InvalidInput

__all__ = ["mcp"]

DEFAULT_PORT = 8765


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


def _token(token_file: Path | None) -> str | None:
    if token_file is None:
        return os.environ.get("CARGOBAY_MCP_TOKEN") or None
    try:
        token = token_file.read_text().strip()
    except OSError as err:
        raise InvalidInput(f"cannot read --token-file {token_file}: {err.strerror}") from err
    if len(token) < 16:
        raise InvalidInput(f"the token in {token_file} is too short: use 16 characters or more")
    return token


def mcp(
    transport: Annotated[
        Transport, typer.Option("--transport", help="stdio, or streamable HTTP.")
    ] = Transport.STDIO,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (http).")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on (http).")
    ] = DEFAULT_PORT,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the bearer token HTTP clients must send (needed off loopback).",
        ),
    ] = None,
) -> None:
    """Run an MCP server whose tools create sandboxes, run commands and move files.

    Over http the endpoint is http://HOST:PORT/mcp."""
    from cargobay.mcp.server import build_server, serve_http, serve_stdio

    server = build_server(current_paths())
    if transport is Transport.STDIO:
        serve_stdio(server)
    else:
        serve_http(server, host, port, _token(token_file))
