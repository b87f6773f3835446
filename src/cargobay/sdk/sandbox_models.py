"""What ``Sandbox`` and ``AsyncSandbox`` share: results, argument checks, output decoding.

No I/O here: the two sandbox classes differ only in how they wait, so the rules (what a
template, a path or a command may be), the records they return and the decoding of an
exec stream into text for the callbacks live once, in this module.

- ``CommandResult``: exit code, stdout and stderr as text (UTF-8, undecodable bytes
  replaced), signal, timed_out, duration.
- ``EntryInfo`` / ``WriteInfo`` / ``SandboxInfo``: a directory entry, a completed write,
  a sandbox as listed.
- ``OutputDecoder``: feed it the daemon's exec events; it answers the text chunks to hand
  to ``on_stdout``/``on_stderr`` as they arrive (a multi-byte character split across two
  chunks is held back until it is whole), and builds the ``CommandResult`` at the end.
"""

from __future__ import annotations

import base64
import codecs
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cargobay.errors import DaemonError, InvalidInput

__all__ = [
    "DEFAULT_BOOT_TIMEOUT",
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_TEMPLATE",
    "CommandResult",
    "EntryInfo",
    "OutputDecoder",
    "SandboxInfo",
    "WriteInfo",
    "check_create_args",
    "check_path",
    "command_argv",
    "encode_data",
    "new_sandbox_name",
]

DEFAULT_TEMPLATE = "default"
"""The built-in image (``cargobay image build``)."""
DEFAULT_BOOT_TIMEOUT = 120.0
"""Seconds ``Sandbox.create`` waits for the guest to answer (a boot under TCG: ~5-10 s)."""
DEFAULT_COMMAND_TIMEOUT = 60.0
"""Seconds a command may run before the guest kills it (None: no limit)."""
SHELL = "/bin/sh"

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None
    """The exit code; None when a signal ended the command (see ``signal``)."""
    stdout: str
    stderr: str
    signal: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    """Seconds from start to exit, measured in the guest."""
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def error(self) -> str | None:
        """Why the command failed, in words; None when it exited with 0."""
        if self.timed_out:
            return "the command timed out and was killed"
        if self.exit_code is None:
            return f"the command was killed by signal {self.signal}"
        if self.exit_code != 0:
            return f"the command exited with {self.exit_code}"
        return None


@dataclass(frozen=True, slots=True)
class EntryInfo:
    name: str
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    target: str | None = None

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> EntryInfo:
        kind = obj.get("type")
        return cls(
            name=str(obj["name"]),
            path=str(obj["path"]),
            type=kind if kind in ("file", "dir", "symlink") else "other",
            size=int(obj.get("size") or 0),
            mode=int(obj.get("mode") or 0),
            mtime=float(obj.get("mtime") or 0.0),
            target=None if obj.get("target") is None else str(obj["target"]),
        )


@dataclass(frozen=True, slots=True)
class WriteInfo:
    path: str
    name: str
    bytes_written: int


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    name: str
    template: str
    state: str
    """creating, running, paused, stopping, stopped or error."""
    cpus: int
    memory_mb: int
    created_at: str | None = None
    error: str | None = None

    @property
    def sandbox_id(self) -> str:
        return self.name

    @classmethod
    def from_machine(cls, machine: Mapping[str, Any]) -> SandboxInfo:
        config = machine.get("config") or {}
        state = machine.get("state") or {}
        return cls(
            name=str(machine.get("name")),
            template=str(config.get("image") or DEFAULT_TEMPLATE),
            state=str(state.get("kind") or "unknown"),
            cpus=int(config.get("cpus") or 0),
            memory_mb=int(config.get("memory_mb") or 0),
            created_at=None if machine.get("created_at") is None else str(machine["created_at"]),
            error=state.get("reason") if state.get("kind") == "error" else None,
        )


# -- argument checks ------------------------------------------------------------------------


def new_sandbox_name() -> str:
    return f"sbx-{secrets.token_hex(4)}"


def check_create_args(
    template: object, cpus: object, memory_mb: object, disk_mb: object, timeout: object
) -> None:
    """Types and ranges of ``Sandbox.create``'s arguments (the daemon checks names, and
    whether the host can give that much)."""
    if not isinstance(template, str) or not template.strip():
        raise InvalidInput("template must be the name of an image, like 'default'")
    limits = (("cpus", cpus, 1), ("memory_mb", memory_mb, 64), ("disk_mb", disk_mb, 16))
    for what, value, low in limits:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInput(f"bad {what} {value!r}: use a whole number, {low} or more")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise InvalidInput(f"bad timeout {timeout!r}: use a number of seconds above 0")


def check_path(path: object) -> str:
    """An absolute guest path, or ``InvalidInput`` saying why not."""
    if not isinstance(path, str) or not path:
        raise InvalidInput("missing path: give an absolute path in the sandbox, like /root/a.txt")
    if "\0" in path:
        raise InvalidInput(f"bad path {path!r}: it contains a NUL byte")
    if not path.startswith("/"):
        raise InvalidInput(f"bad path {path!r}: sandbox paths are absolute, like /root/{path}")
    return path


def command_argv(cmd: str | Sequence[str]) -> list[str]:
    """A shell command line runs under ``/bin/sh -c``; a sequence is the argv itself."""
    if isinstance(cmd, str):
        if not cmd.strip():
            raise InvalidInput("empty command: give a shell command line, like 'echo hi'")
        return [SHELL, "-c", cmd]
    argv = list(cmd)
    if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
        raise InvalidInput("bad command: use a shell command line or a non-empty list of strings")
    return argv


def check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise InvalidInput(f"bad timeout {timeout!r}: use seconds above 0, or None for no limit")
    return float(timeout)


def encode_data(data: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise InvalidInput(f"file data must be str or bytes, not {type(data).__name__}")


# -- exec output ----------------------------------------------------------------------------


class OutputDecoder:
    """The daemon's exec events in, text chunks and a ``CommandResult`` out (sans-IO)."""

    def __init__(self) -> None:
        self._decoders = {
            stream: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for stream in ("stdout", "stderr")
        }
        self._text: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._pid: int | None = None
        self._exit: Mapping[str, Any] | None = None

    def feed(self, event: Mapping[str, Any]) -> tuple[Stream, str] | None:
        """The text an event carries for a callback (None: nothing to hand out yet)."""
        kind = event.get("type")
        if kind == "stdout" or kind == "stderr":
            data = base64.b64decode(event.get("data_b64") or "")
            text = self._decoders[kind].decode(data)
            if text:
                self._text[kind].append(text)
                return kind, text
        elif kind == "started":
            self._pid = event.get("pid")
        elif kind == "exit":
            self._exit = event
        return None

    def flush(self) -> list[tuple[Stream, str]]:
        """What the decoders still hold (an incomplete character at the very end)."""
        out: list[tuple[Stream, str]] = []
        streams: tuple[Stream, Stream] = ("stdout", "stderr")
        for stream in streams:
            rest = self._decoders[stream].decode(b"", final=True)
            if rest:
                self._text[stream].append(rest)
                out.append((stream, rest))
        return out

    def result(self) -> CommandResult:
        if self._exit is None:
            raise DaemonError("the command's output stream ended without its exit status")
        code = self._exit.get("exit_code")
        sig = self._exit.get("signal")
        return CommandResult(
            exit_code=None if code is None else int(code),
            stdout="".join(self._text["stdout"]),
            stderr="".join(self._text["stderr"]),
            signal=None if sig is None else int(sig),
            timed_out=bool(self._exit.get("timed_out")),
            duration=float(self._exit.get("duration") or 0.0),
            pid=self._pid,
        )
