"""``AsyncSandbox``: ``cargobay.sdk.sandbox.Sandbox`` for asyncio, same shape, awaited.

    async with await AsyncSandbox.create() as sbx:
        r = await sbx.commands.run("echo hi", on_stdout=print)
        await sbx.files.write("/root/a.txt", "hello")
        print(await sbx.files.read("/root/a.txt"))

Output callbacks may be plain functions or coroutine functions (awaited in order, so a
slow callback slows the reading of the stream rather than reordering it).  Starting the
daemon (``ensure_daemon``: a process spawn and a short poll) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Literal, Self, overload

from cargobay.errors import NotFound
from cargobay.paths import Paths
from cargobay.sdk.client import AsyncCargoBayClient
from cargobay.sdk.daemon import ensure_daemon
from cargobay.sdk.sandbox import command_failed, not_found_as_template, unknown_template
from cargobay.sdk.sandbox_models import (
    DEFAULT_BOOT_TIMEOUT,
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_TEMPLATE,
    CommandResult,
    EntryInfo,
    OutputDecoder,
    SandboxInfo,
    WriteInfo,
    check_create_args,
    check_path,
    check_timeout,
    command_argv,
    encode_data,
    new_sandbox_name,
)

__all__ = ["AsyncCommands", "AsyncFiles", "AsyncSandbox"]

AsyncOutputCallback = Callable[[str], Awaitable[object] | object]


async def _client(paths: Paths | None, autostart: bool) -> AsyncCargoBayClient:
    paths = paths or Paths.from_env()
    if autostart:
        await asyncio.to_thread(ensure_daemon, paths)
    return AsyncCargoBayClient(paths=paths)


async def _call(callback: AsyncOutputCallback | None, text: str) -> None:
    if callback is not None:
        outcome = callback(text)
        if inspect.isawaitable(outcome):
            await outcome


class AsyncCommands:
    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    async def run(
        self,
        cmd: str | Sequence[str],
        *,
        on_stdout: AsyncOutputCallback | None = None,
        on_stderr: AsyncOutputCallback | None = None,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: str | bytes | None = None,
        check: bool = False,
    ) -> CommandResult:
        """See ``Commands.run``."""
        argv = command_argv(cmd)
        seconds = check_timeout(timeout)
        if cwd is not None:
            check_path(cwd)
        decoder = OutputDecoder()
        callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        events = self._sandbox.client.exec_stream(
            self._sandbox.name,
            argv,
            env=env,
            cwd=cwd,
            stdin=None if stdin is None else encode_data(stdin),
            timeout=seconds,
        )
        async for event in events:
            if (chunk := decoder.feed(event)) is not None:
                await _call(callbacks[chunk[0]], chunk[1])
        for stream, text in decoder.flush():
            await _call(callbacks[stream], text)
        result = decoder.result()
        if check and not result.ok:
            raise command_failed(result, argv)
        return result


class AsyncFiles:
    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    @overload
    async def read(self, path: str, *, format: Literal["text"] = "text") -> str: ...

    @overload
    async def read(self, path: str, *, format: Literal["bytes"]) -> bytes: ...

    async def read(self, path: str, *, format: Literal["text", "bytes"] = "text") -> str | bytes:
        data = await self._sandbox.client.read_file(self._sandbox.name, check_path(path))
        return data if format == "bytes" else data.decode(errors="replace")

    async def write(
        self, path: str, data: str | bytes, *, mode: int | None = None, mkdirs: bool = True
    ) -> WriteInfo:
        answer = await self._sandbox.client.write_file(
            self._sandbox.name, check_path(path), encode_data(data), mode=mode, mkdirs=mkdirs
        )
        return WriteInfo(path=path, name=path.rsplit("/", 1)[-1], bytes_written=answer["written"])

    async def list(self, path: str = "/") -> list[EntryInfo]:
        entries = await self._sandbox.client.list_files(self._sandbox.name, check_path(path))
        return [EntryInfo.from_api(e) for e in entries]


class AsyncSandbox:
    """See ``Sandbox``; every call is awaited, ``async with`` kills it on exit."""

    def __init__(self, name: str, template: str, client: AsyncCargoBayClient) -> None:
        self.name = name
        self.template = template
        self.client = client
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)

    def __repr__(self) -> str:
        return f"AsyncSandbox(name={self.name!r}, template={self.template!r})"

    @property
    def sandbox_id(self) -> str:
        return self.name

    @classmethod
    async def create(
        cls,
        template: str = DEFAULT_TEMPLATE,
        *,
        name: str | None = None,
        cpus: int = 1,
        memory_mb: int = 512,
        disk_mb: int = 2048,
        timeout: float = DEFAULT_BOOT_TIMEOUT,
        paths: Paths | None = None,
        autostart: bool = True,
    ) -> AsyncSandbox:
        check_create_args(template, cpus, memory_mb, disk_mb, timeout)
        client = await _client(paths, autostart)
        try:
            images = await client.list_images()
            if template not in {i.get("name") for i in images}:
                raise unknown_template(template, images)
            name = name or new_sandbox_name()
            try:
                await client.create_machine(
                    name,
                    image=template,
                    cpus=cpus,
                    memory=memory_mb,
                    disk=disk_mb,
                    start=True,
                    boot_timeout=timeout,
                )
            except NotFound as err:
                raise not_found_as_template(err, template) from err
        except BaseException:
            await client.close()
            raise
        return cls(name, template, client)

    @classmethod
    async def connect(
        cls,
        name: str,
        *,
        timeout: float = DEFAULT_BOOT_TIMEOUT,
        paths: Paths | None = None,
        autostart: bool = True,
    ) -> AsyncSandbox:
        client = await _client(paths, autostart)
        try:
            machine = await client.get_machine(name)
            state = (machine.get("state") or {}).get("kind")
            if state == "paused":
                machine = await client.resume(name)
            elif state in ("stopped", "error"):
                machine = await client.start(name, boot_timeout=timeout)
        except BaseException:
            await client.close()
            raise
        return cls(name, SandboxInfo.from_machine(machine).template, client)

    @staticmethod
    async def list(*, paths: Paths | None = None, autostart: bool = True) -> list[SandboxInfo]:
        async with await _client(paths, autostart) as client:
            machines = await client.list_machines()
        return sorted((SandboxInfo.from_machine(m) for m in machines), key=lambda s: s.name)

    async def info(self) -> SandboxInfo:
        return SandboxInfo.from_machine(await self.client.get_machine(self.name))

    async def is_running(self) -> bool:
        try:
            return (await self.info()).state == "running"
        except NotFound:
            return False

    async def stop(self, *, timeout: float = 10.0) -> SandboxInfo:
        return SandboxInfo.from_machine(await self.client.stop(self.name, timeout=timeout))

    async def kill(self) -> bool:
        try:
            await self.client.delete(self.name, force=True)
        except NotFound:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.kill()
        finally:
            await self.close()
