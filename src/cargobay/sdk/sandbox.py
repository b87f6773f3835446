"""Sandboxes: the SDK agent developers expect (E2B-like), local-first, over cargobayd.

    from cargobay.sdk.sandbox import Sandbox

    with Sandbox.create(template="default") as sbx:       # boots a VM; killed on exit
        r = sbx.commands.run("uname -a", on_stdout=print)  # output streamed as it comes
        print(r.exit_code, r.stdout)
        sbx.files.write("/root/notes.txt", "hello")
        print(sbx.files.read("/root/notes.txt"))           # "hello"
        print([e.name for e in sbx.files.list("/root")])

A sandbox is a CargoBay machine: ``create`` makes one and boots it through the daemon
(which is started when it is not running, as the CLI does); ``Sandbox.connect(name)``
attaches to an existing one (booting or resuming it if needed); ``Sandbox.list()`` lists
them all; ``kill()`` stops and removes it.  A template is the name of a built image
(``cargobay image ls``; the built-in one is ``default``).  A sandbox lives until it is
killed: there is no lifetime limit.

``commands.run(cmd)`` runs a shell command line (``/bin/sh -c``) or an argv list; its
output reaches ``on_stdout``/``on_stderr`` as text while it runs, and the result has
``exit_code``, ``stdout``, ``stderr``.  A non-zero exit is not an exception unless
``check=True`` (then ``CommandExitError``, carrying the result).

``AsyncSandbox`` (``cargobay.sdk.async_sandbox``) has the same shape with ``await``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, overload

from cargobay.errors import CommandExitError, NotFound, TemplateNotFound
from cargobay.paths import Paths
from cargobay.sdk.client import CargoBayClient
from cargobay.sdk.daemon import ensure_daemon
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

__all__ = ["CommandResult", "Commands", "EntryInfo", "Files", "Sandbox", "SandboxInfo"]

OutputCallback = Callable[[str], object]


def unknown_template(template: str, images: Sequence[Mapping[str, Any]]) -> TemplateNotFound:
    built = sorted(str(i.get("name")) for i in images)
    have = f"built images: {', '.join(built)}" if built else "no image is built yet"
    return TemplateNotFound(
        f"unknown sandbox template {template!r}: a template is the name of a built image "
        f"({have}); build it with `cargobay image build {template}`"
    )


def not_found_as_template(err: NotFound, template: str) -> Exception:
    """The daemon's "no image named X" on create, in sandbox words."""
    if "image" in str(err):
        return TemplateNotFound(f"unknown sandbox template {template!r}: {err}")
    return err


def command_failed(result: CommandResult, argv: Sequence[str]) -> CommandExitError:
    tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    said = ("; it said: " + " | ".join(tail)) if tail else ""
    return CommandExitError(f"{' '.join(argv)!r}: {result.error}{said}", result)


def _client(paths: Paths | None, autostart: bool) -> CargoBayClient:
    paths = paths or Paths.from_env()
    if autostart:
        ensure_daemon(paths)
    return CargoBayClient(paths=paths)


class Commands:
    """``sandbox.commands``: run programs in the sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: str | bytes | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run ``cmd`` to its end, handing its output to the callbacks as it arrives.

        ``timeout``: seconds before the guest kills it (``result.timed_out``); None: none.
        """
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
        for event in events:
            if (chunk := decoder.feed(event)) is not None:
                stream, text = chunk
                if (callback := callbacks[stream]) is not None:
                    callback(text)
        for stream, text in decoder.flush():
            if (callback := callbacks[stream]) is not None:
                callback(text)
        result = decoder.result()
        if check and not result.ok:
            raise command_failed(result, argv)
        return result


class Files:
    """``sandbox.files``: read, write and list files in the sandbox (64 MiB per file)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    @overload
    def read(self, path: str, *, format: Literal["text"] = "text") -> str: ...

    @overload
    def read(self, path: str, *, format: Literal["bytes"]) -> bytes: ...

    def read(self, path: str, *, format: Literal["text", "bytes"] = "text") -> str | bytes:
        """The file's contents: text (UTF-8, undecodable bytes replaced) or bytes."""
        data = self._sandbox.client.read_file(self._sandbox.name, check_path(path))
        return data if format == "bytes" else data.decode(errors="replace")

    def write(
        self, path: str, data: str | bytes, *, mode: int | None = None, mkdirs: bool = True
    ) -> WriteInfo:
        """Create or replace the file (atomically); missing parent directories are made."""
        answer = self._sandbox.client.write_file(
            self._sandbox.name, check_path(path), encode_data(data), mode=mode, mkdirs=mkdirs
        )
        return WriteInfo(path=path, name=path.rsplit("/", 1)[-1], bytes_written=answer["written"])

    def list(self, path: str = "/") -> list[EntryInfo]:
        """The directory's entries, by name (symlinks are not followed)."""
        entries = self._sandbox.client.list_files(self._sandbox.name, check_path(path))
        return [EntryInfo.from_api(e) for e in entries]


class Sandbox:
    """A running CargoBay machine, driven through the daemon.  Use ``Sandbox.create`` or
    ``Sandbox.connect``; as a context manager it is killed on exit."""

    def __init__(self, name: str, template: str, client: CargoBayClient) -> None:
        self.name = name
        self.template = template
        self.client = client
        self.commands = Commands(self)
        self.files = Files(self)

    def __repr__(self) -> str:
        return f"Sandbox(name={self.name!r}, template={self.template!r})"

    @property
    def sandbox_id(self) -> str:
        return self.name

    @classmethod
    def create(
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
    ) -> Sandbox:
        """Create and boot a sandbox from ``template`` (an image name); ``timeout``
        bounds the boot.  ``autostart=False``: fail rather than start cargobayd."""
        check_create_args(template, cpus, memory_mb, disk_mb, timeout)
        client = _client(paths, autostart)
        try:
            images = client.list_images()
            if template not in {i.get("name") for i in images}:
                raise unknown_template(template, images)
            name = name or new_sandbox_name()
            try:
                client.create_machine(
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
            client.close()
            raise
        return cls(name, template, client)

    @classmethod
    def connect(
        cls,
        name: str,
        *,
        timeout: float = DEFAULT_BOOT_TIMEOUT,
        paths: Paths | None = None,
        autostart: bool = True,
    ) -> Sandbox:
        """Attach to sandbox ``name``; a paused one is resumed, a stopped one booted."""
        client = _client(paths, autostart)
        try:
            machine = client.get_machine(name)
            state = (machine.get("state") or {}).get("kind")
            if state == "paused":
                machine = client.resume(name)
            elif state in ("stopped", "error"):
                machine = client.start(name, boot_timeout=timeout)
        except BaseException:
            client.close()
            raise
        return cls(name, SandboxInfo.from_machine(machine).template, client)

    @staticmethod
    def list(*, paths: Paths | None = None, autostart: bool = True) -> list[SandboxInfo]:
        """Every sandbox (every machine of this daemon), by name."""
        with _client(paths, autostart) as client:
            machines = client.list_machines()
        return sorted((SandboxInfo.from_machine(m) for m in machines), key=lambda s: s.name)

    def info(self) -> SandboxInfo:
        return SandboxInfo.from_machine(self.client.get_machine(self.name))

    def is_running(self) -> bool:
        try:
            return self.info().state == "running"
        except NotFound:
            return False

    def stop(self, *, timeout: float = 10.0) -> SandboxInfo:
        """Shut the guest down (its disk is kept; ``Sandbox.connect`` boots it again)."""
        return SandboxInfo.from_machine(self.client.stop(self.name, timeout=timeout))

    def kill(self) -> bool:
        """Stop and remove the sandbox; False if it was already gone."""
        try:
            self.client.delete(self.name, force=True)
        except NotFound:
            return False
        return True

    def close(self) -> None:
        """Let go of the daemon connection (the sandbox keeps running)."""
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.kill()
        finally:
            self.close()
