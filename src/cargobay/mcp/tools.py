"""The sandbox tools the MCP server offers, as plain async methods over ``cargobay.sdk``.

Kept apart from the MCP wiring (``server.py``) so their rules are readable in one place
and testable without a transport:

- every tool reaches the daemon through one ``AsyncCargoBayClient`` (made on first use,
  after ``ensure_daemon`` when autostart is on: ``CARGOBAY_AUTOSTART=0`` turns it off);
- arguments are checked before the daemon is asked (names, absolute paths, encodings);
- a ``CargoBayError`` (the daemon's or ours) becomes a ``ToolError`` with its message,
  which the client sees as a tool result with ``isError`` set, never a crash;
- command output is capped (``MAX_OUTPUT_CHARS`` per stream, the end kept) so one noisy
  command cannot flood the model's context.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import re
from collections.abc import Iterator
from typing import Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from cargobay.errors import CargoBayError, InvalidInput, NotFound
from cargobay.paths import Paths
from cargobay.sdk.async_sandbox import AsyncSandbox
from cargobay.sdk.client import AsyncCargoBayClient
from cargobay.sdk.daemon import ensure_daemon
from cargobay.sdk.sandbox import not_found_as_template, unknown_template
from cargobay.sdk.sandbox_models import (
    DEFAULT_COMMAND_TIMEOUT,
    SandboxInfo,
    check_create_args,
    check_path,
    new_sandbox_name,
)

__all__ = [
    "BOOT_TIMEOUT",
    "MAX_OUTPUT_CHARS",
    "CommandOutput",
    "FileContent",
    "FileListing",
    "SandboxList",
    "SandboxSummary",
    "SandboxTools",
    "WrittenFile",
    "check_name",
    "clip",
]

BOOT_TIMEOUT = 180.0
MAX_OUTPUT_CHARS = 64_000
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
Encoding = Literal["utf-8", "base64"]


class SandboxSummary(BaseModel):
    name: str
    template: str
    state: str = Field(description="creating, running, paused, stopping, stopped or error")
    cpus: int
    memory_mb: int
    error: str | None = None

    @classmethod
    def of(cls, info: SandboxInfo) -> SandboxSummary:
        return cls(
            name=info.name,
            template=info.template,
            state=info.state,
            cpus=info.cpus,
            memory_mb=info.memory_mb,
            error=info.error,
        )


class SandboxList(BaseModel):
    sandboxes: list[SandboxSummary]


class CommandOutput(BaseModel):
    exit_code: int | None = Field(description="None when a signal ended the command")
    stdout: str
    stderr: str
    timed_out: bool = False
    signal: int | None = None
    duration: float = Field(description="Seconds, measured in the sandbox")


class FileContent(BaseModel):
    path: str
    content: str
    encoding: Encoding
    size: int = Field(description="Bytes")


class WrittenFile(BaseModel):
    path: str
    bytes_written: int


class FileEntryOut(BaseModel):
    name: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int


class FileListing(BaseModel):
    path: str
    entries: list[FileEntryOut]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"bad sandbox name {name!r}: 1-63 characters of a-z 0-9 - _ . starting with a "
            "letter or digit (list_sandboxes shows the names)"
        )
    return name


def clip(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """``text``, or its last ``limit`` characters after a note saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """CargoBay errors as MCP tool errors (the message the model reads)."""
    try:
        yield
    except CargoBayError as err:
        raise ToolError(str(err)) from err


def autostart_enabled() -> bool:
    return os.environ.get("CARGOBAY_AUTOSTART", "1").strip().lower() not in ("0", "false", "no")


class SandboxTools:
    """What each MCP tool does; one daemon client for the server's life."""

    def __init__(self, paths: Paths | None = None, *, autostart: bool | None = None) -> None:
        self.paths = paths or Paths.from_env()
        self.autostart = autostart_enabled() if autostart is None else autostart
        self._client: AsyncCargoBayClient | None = None

    async def client(self) -> AsyncCargoBayClient:
        if self.autostart:
            # cheap when it runs (one /v1/info); starts it again if it went away
            await asyncio.to_thread(ensure_daemon, self.paths)
        if self._client is None:
            self._client = AsyncCargoBayClient(paths=self.paths)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _sandbox(self, name: str) -> AsyncSandbox:
        client = await self.client()
        machine = await client.get_machine(check_name(name))
        return AsyncSandbox(name, SandboxInfo.from_machine(machine).template, client)

    # -- the tools --------------------------------------------------------------------------

    async def create_sandbox(
        self, template: str, name: str | None, cpus: int, memory_mb: int
    ) -> SandboxSummary:
        with tool_errors():
            check_create_args(template, cpus, memory_mb, 2048, BOOT_TIMEOUT)
            name = check_name(name) if name else new_sandbox_name()
            client = await self.client()
            images = await client.list_images()
            if template not in {i.get("name") for i in images}:
                raise unknown_template(template, images)
            try:
                machine = await client.create_machine(
                    name, image=template, cpus=cpus, memory=memory_mb, boot_timeout=BOOT_TIMEOUT
                )
            except NotFound as err:
                raise not_found_as_template(err, template) from err
            return SandboxSummary.of(SandboxInfo.from_machine(machine))

    async def list_sandboxes(self) -> SandboxList:
        with tool_errors():
            machines = await (await self.client()).list_machines()
            infos = sorted((SandboxInfo.from_machine(m) for m in machines), key=lambda i: i.name)
            return SandboxList(sandboxes=[SandboxSummary.of(i) for i in infos])

    async def start_sandbox(self, name: str) -> SandboxSummary:
        with tool_errors():
            machine = await (await self.client()).start(check_name(name), boot_timeout=BOOT_TIMEOUT)
            return SandboxSummary.of(SandboxInfo.from_machine(machine))

    async def stop_sandbox(self, name: str) -> SandboxSummary:
        with tool_errors():
            return SandboxSummary.of(await (await self._sandbox(name)).stop())

    async def delete_sandbox(self, name: str) -> str:
        with tool_errors():
            if not await (await self._sandbox(name)).kill():
                raise NotFound(f"no sandbox named {name!r}")
            return f"deleted sandbox {name}"

    async def run_command(
        self,
        name: str,
        command: str,
        timeout: float | None,
        cwd: str | None,
        env: dict[str, str] | None,
    ) -> CommandOutput:
        with tool_errors():
            sandbox = await self._sandbox(name)
            result = await sandbox.commands.run(
                command, timeout=timeout or DEFAULT_COMMAND_TIMEOUT, cwd=cwd, env=env
            )
            return CommandOutput(
                exit_code=result.exit_code,
                stdout=clip(result.stdout),
                stderr=clip(result.stderr),
                timed_out=result.timed_out,
                signal=result.signal,
                duration=result.duration,
            )

    async def read_file(self, name: str, path: str, encoding: Encoding) -> FileContent:
        with tool_errors():
            check_path(path)
            sandbox = await self._sandbox(name)
            data = await sandbox.files.read(path, format="bytes")
            if encoding == "base64":
                text = base64.b64encode(data).decode()
            else:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise InvalidInput(
                        f"{path} is not UTF-8 text ({len(data)} bytes); "
                        "read it with encoding='base64'"
                    ) from err
            return FileContent(path=path, content=text, encoding=encoding, size=len(data))

    async def write_file(
        self, name: str, path: str, content: str, encoding: Encoding
    ) -> WrittenFile:
        with tool_errors():
            check_path(path)
            if encoding == "base64":
                try:
                    data = base64.b64decode(content, validate=True)
                except (binascii.Error, ValueError) as err:
                    raise InvalidInput("content is not valid base64") from err
            else:
                data = content.encode()
            sandbox = await self._sandbox(name)
            info = await sandbox.files.write(path, data)
            return WrittenFile(path=path, bytes_written=info.bytes_written)

    async def list_files(self, name: str, path: str) -> FileListing:
        with tool_errors():
            check_path(path)
            sandbox = await self._sandbox(name)
            entries = await sandbox.files.list(path)
            return FileListing(
                path=path,
                entries=[FileEntryOut(name=e.name, type=e.type, size=e.size) for e in entries],
            )
