"""Files inside a running machine, through its guest agent: read, write, list.

The machines service reaches the agent (``MachineService.read_file`` and friends); this
module holds the rules and the translation, so they live in one place:

- a guest path is absolute, at most ``MAX_PATH_BYTES`` long and has no NUL byte
  (``check_guest_path``; the agent checks "absolute" too, but a caller should hear about
  a relative path before any guest is involved);
- one read or write carries at most ``MAX_FILE_BYTES``: the daemon holds the contents in
  memory for the length of one HTTP request (larger transfers: ``exec`` with ``tar``);
- the agent's error kinds become the API's error classes: ``not_found`` -> ``NotFound``
  (404); a path that is a directory, not a directory, not permitted or otherwise unusable
  -> ``InvalidInput`` (400); a broken channel stays a ``GuestError`` (502).
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cargobay.errors import (
    CargoBayError,
    FileTooLarge,
    GuestError,
    GuestTimeout,
    InvalidInput,
    NotFound,
)

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PATH_BYTES",
    "FileAgent",
    "FileEntry",
    "check_guest_path",
    "list_dir",
    "read_file",
    "too_large",
    "write_file",
]

MAX_FILE_BYTES = 64 * 1024 * 1024
"""The largest file one API read or write carries (64 MiB)."""
MAX_PATH_BYTES = 4096
"""PATH_MAX on Linux."""

_INPUT_KINDS = ("is_a_directory", "not_a_directory", "permission", "exists", "invalid")


@runtime_checkable
class FileAgent(Protocol):
    """The file calls of ``cargobay.guest.client.AgentClient``."""

    async def read_file(
        self, path: str, *, offset: int = 0, length: int | None = None
    ) -> bytes: ...

    async def write_file(
        self, path: str, data: bytes, *, mode: int | None = None, mkdirs: bool = False
    ) -> int: ...

    async def list_dir(self, path: str) -> Sequence[Any]: ...


class FileEntry(BaseModel):
    """One directory entry in the guest (an ``lstat``: a symlink is not followed)."""

    name: str
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int = Field(description="Bytes (for a symlink: the length of its target).")
    mode: int = Field(description="Permission bits, e.g. 420 (0o644).")
    mtime: float = Field(description="Modification time, seconds since the epoch.")
    uid: int
    gid: int
    target: str | None = Field(default=None, description="A symlink's target.")


def check_guest_path(path: str, what: str = "path") -> str:
    """``path`` if it is a usable absolute guest path, else ``InvalidInput``."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"missing {what}: give an absolute path in the guest, like /tmp/x")
    if "\0" in path:
        raise InvalidInput(f"bad {what} {path!r}: it contains a NUL byte")
    if not path.startswith("/"):
        raise InvalidInput(
            f"bad {what} {path!r}: guest paths are absolute (start with /), like /root/{path}"
        )
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidInput(f"bad {what}: longer than {MAX_PATH_BYTES} bytes")
    return path


def check_mode(mode: int | None) -> int | None:
    if mode is not None and not 0 <= mode <= 0o7777:
        raise InvalidInput(f"bad mode {mode}: permission bits are 0 to 0o7777 (4095)")
    return mode


def too_large(path: str, size: int | None = None, limit: int = MAX_FILE_BYTES) -> FileTooLarge:
    have = f" ({size} bytes)" if size is not None else ""
    most = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return FileTooLarge(
        f"{path}{have} is larger than {most}, the limit of one file transfer; "
        "copy it in parts or with `tar` through exec"
    )


@contextlib.contextmanager
def _translate(machine: str) -> Iterator[None]:
    """Agent errors as API errors, prefixed with the machine's name."""
    try:
        yield
    except CargoBayError as err:
        kind = getattr(err, "kind", None)
        message = f"machine {machine!r}: {err}"
        if kind == "not_found":
            raise NotFound(message) from err
        if kind in _INPUT_KINDS:
            raise InvalidInput(message) from err
        if isinstance(err, GuestTimeout):
            raise GuestTimeout(message) from err
        if isinstance(err, GuestError):
            raise GuestError(message) from err
        raise


def _agent(agent: object, machine: str) -> FileAgent:
    if not isinstance(agent, FileAgent):
        raise GuestError(f"machine {machine!r}: its guest agent has no file operations")
    return agent


async def read_file(
    agent: object, machine: str, path: str, max_bytes: int = MAX_FILE_BYTES
) -> bytes:
    """The contents of ``path`` (``FileTooLarge`` past ``max_bytes``)."""
    check_guest_path(path)
    with _translate(machine):
        data = await _agent(agent, machine).read_file(path, length=max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(path, limit=max_bytes)
    return data


async def write_file(
    agent: object, machine: str, path: str, data: bytes, *, mode: int | None, mkdirs: bool
) -> int:
    """Write ``path`` atomically (the agent renames a complete temporary file over it)."""
    check_guest_path(path)
    check_mode(mode)
    if len(data) > MAX_FILE_BYTES:
        raise too_large(path, len(data))
    with _translate(machine):
        return await _agent(agent, machine).write_file(path, data, mode=mode, mkdirs=mkdirs)


async def list_dir(agent: object, machine: str, path: str) -> list[FileEntry]:
    """The entries of directory ``path``, by name."""
    check_guest_path(path)
    with _translate(machine):
        entries = await _agent(agent, machine).list_dir(path)
    return [_entry(e) for e in entries]


def _entry(st: Any) -> FileEntry:
    kind: Literal["file", "dir", "symlink", "other"] = "other"
    if st.type in ("file", "dir", "symlink"):
        kind = st.type
    return FileEntry(
        name=st.name,
        path=st.path,
        type=kind,
        size=st.size,
        mode=stat.S_IMODE(st.mode),
        mtime=st.mtime,
        uid=st.uid,
        gid=st.gid,
        target=st.target,
    )
