"""``data NAME push|pull|sync``: trees between the host and a running machine, through its
guest agent (``machines.data_sync`` holds the rules and the plan).

    push  HOST_PATH -> GUEST_PATH, every file
    pull  GUEST_PATH -> HOST_PATH, every file
    sync  HOST_PATH -> GUEST_PATH (``reverse``: GUEST_PATH -> HOST_PATH), only what differs
          in size, sha256, mode, type or link target; ``delete`` also removes what the
          source lacks

The guest side is listed and hashed by the guest's python3 (``agent exec``), files move
with the agent's file read/write (one file at most 64 MiB, ``guest_files.MAX_FILE_BYTES``),
directories and symlinks are made by one ``python3`` exec that checks every parent
resolves inside the root.  On the host, every write goes to a temporary file in its
directory, renamed over the name (a symlink in the way is replaced, never followed), after
checking that the directory resolves inside the root.  Modes are kept.

Events (the daemon streams them as NDJSON): ``plan`` (counts and bytes), one ``file`` per
file, link or removal done, then ``done`` with the lists sent / skipped / removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from cargobay.errors import GuestError, InvalidInput, NotFound
from cargobay.machines.agent import ExecEvent, ExecExit, ExecOutput, ExecRequest
from cargobay.machines.data_sync import (
    GUEST_APPLY_SCRIPT,
    GUEST_MANIFEST_SCRIPT,
    Entry,
    check_link,
    check_member,
    host_manifest,
    plan,
)
from cargobay.machines.guest_files import check_guest_path
from cargobay.machines.shares import check_guest_dir

__all__ = ["Direction", "GuestOps", "transfer"]

Direction = Literal["push", "pull"]
GUEST_EXEC_TIMEOUT = 300.0


class GuestOps(Protocol):
    """What a transfer needs of the machines service."""

    async def exec(self, name: str, request: ExecRequest) -> AsyncIterator[ExecEvent]: ...

    async def read_file(self, name: str, path: str, max_bytes: int = ...) -> bytes: ...

    async def write_file(
        self, name: str, path: str, data: bytes, *, mode: int | None = None, mkdirs: bool = False
    ) -> int: ...


async def _python(ops: GuestOps, name: str, argv: list[str], stdin: bytes | None = None) -> bytes:
    request = ExecRequest(
        argv=["python3", "-c", *argv], stdin=stdin if stdin is not None else b"",
        timeout=GUEST_EXEC_TIMEOUT,
    )  # fmt: skip
    out, err, code = b"", b"", None
    async for event in await ops.exec(name, request):
        if isinstance(event, ExecOutput):
            if event.stream == "stdout":
                out += event.data
            else:
                err += event.data
        elif isinstance(event, ExecExit):
            code = event.exit_code
    if code != 0:
        text = err.decode(errors="replace").strip().splitlines()
        raise (InvalidInput if text and text[-1].startswith("refused") else GuestError)(
            f"machine {name!r}: {text[-1] if text else f'guest helper exited with {code}'}"
        )
    return out


async def guest_manifest(ops: GuestOps, name: str, root: str, with_hash: bool) -> dict[str, Entry]:
    raw = await _python(ops, name, [GUEST_MANIFEST_SCRIPT, root, "1" if with_hash else "0"])
    try:
        data = json.loads(raw)
        return {str(k): Entry.model_validate(v) for k, v in data.items()}
    except (ValueError, AttributeError) as err:
        raise GuestError(f"machine {name!r}: unreadable listing of {root}: {err}") from err


def _join(root: str, rel: str) -> str:
    return posixpath.join(root, rel) if rel else root


def _host_path(root: Path, rel: str) -> Path:
    """Where ``rel`` goes under ``root``, once its directory resolves inside ``root``."""
    check_member(rel)
    if not rel:
        return root
    path = root / rel
    real_root = os.path.realpath(root)
    parent = os.path.realpath(path.parent)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise InvalidInput(f"refused: {path} would be written outside {root}")
    return path


def _write_host(root: Path, rel: str, data: bytes, mode: int) -> None:
    path = _host_path(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cargobay-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_host(root: Path, rel: str) -> bytes:
    path = root / rel if rel else root
    fd = os.open(path, os.O_RDONLY | (os.O_NOFOLLOW if rel else 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _apply_host(root: Path, remove: list[str], mkdirs: list[tuple[str, int]]) -> None:
    for rel in remove:
        path = _host_path(root, rel)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    for rel, mode in mkdirs:
        path = _host_path(root, rel)
        if not path.is_dir() or path.is_symlink():
            path.mkdir()
        path.chmod(mode)


def _link_host(root: Path, rel: str, target: str) -> None:
    check_link(rel, target)
    path = _host_path(root, rel)
    if os.path.lexists(path):
        path.unlink()
    os.symlink(target, path)


async def transfer(
    ops: GuestOps,
    name: str,
    host_path: str,
    guest_path: str,
    direction: Direction,
    *,
    only_changed: bool,
    delete: bool = False,
) -> AsyncIterator[dict[str, Any]]:
    """Copy between ``host_path`` and ``guest_path``; yields the progress events."""
    check_guest_path(guest_path, "guest path")
    check_guest_dir(guest_path)
    host = Path(host_path)
    if not host.is_absolute():
        raise InvalidInput(f"bad host path {host_path!r}: give an absolute path")
    if ".." in host.parts:
        raise InvalidInput(f"bad host path {host_path!r}: '..' is not allowed")
    guest = guest_path.rstrip("/") or "/"
    began = time.monotonic()
    if direction == "push":
        source = await asyncio.to_thread(host_manifest, host, True)
        if not source:
            raise NotFound(f"nothing to send: {host} does not exist")
        target = await guest_manifest(ops, name, guest, only_changed)
    else:
        source = await guest_manifest(ops, name, guest, True)
        if not source:
            raise NotFound(f"machine {name!r}: nothing to fetch: {guest} does not exist")
        target = await asyncio.to_thread(host_manifest, host, only_changed)
    is_dir = source[""].type == "dir"
    top = target.get("")
    if not is_dir and top is not None and top.type == "dir":  # a file into a directory
        leaf = posixpath.basename(guest) if direction == "pull" else host.name
        guest, host = (_join(guest, leaf), host) if direction == "push" else (guest, host / leaf)
        target = await (
            guest_manifest(ops, name, guest, only_changed)
            if direction == "push"
            else asyncio.to_thread(host_manifest, host, only_changed)
        )
    elif is_dir and top is not None and top.type != "dir":
        raise InvalidInput(f"refused: the source is a directory and the target is a {top.type}")
    if is_dir:  # the root itself is made, never replaced or re-moded
        source = {k: v for k, v in source.items() if k}
        target = {k: v for k, v in target.items() if k}
    p = plan(source, target, only_changed=only_changed, delete=delete)
    yield {
        "type": "plan", "direction": direction, "send": len(p.send), "mkdirs": len(p.mkdirs),
        "skip": len(p.skip), "remove": len(p.remove), "bytes": p.bytes,
    }  # fmt: skip
    links = [rel for rel in p.send if source[rel].type == "symlink"]
    files = [rel for rel in p.send if source[rel].type == "file"]
    mkdirs = [(rel, source[rel].mode) for rel in p.mkdirs]
    if direction == "push":
        ops_in = {
            "remove": [_join(guest, r) for r in p.remove],
            "mkdirs": ([[guest, None]] if is_dir else [])
            + [[_join(guest, r), m] for r, m in mkdirs],
            "links": [],
        }
        await _python(ops, name, [GUEST_APPLY_SCRIPT, guest], json.dumps(ops_in).encode())
    elif is_dir:
        await asyncio.to_thread(_apply_host, host, p.remove, mkdirs)
    else:
        await asyncio.to_thread(_apply_host, host.parent, [], [])
    for rel in p.remove:
        yield {"type": "file", "action": "removed", "path": rel, "bytes": 0}
    sent_bytes = 0
    for rel in files:
        entry = source[rel]
        if direction == "push":
            data = await asyncio.to_thread(_read_host, host, rel)
            await ops.write_file(name, _join(guest, rel), data, mode=entry.mode, mkdirs=True)
        else:
            data = await ops.read_file(name, _join(guest, rel))
            await asyncio.to_thread(_write_host, host, rel, data, entry.mode)
        sent_bytes += len(data)
        yield {"type": "file", "action": "sent", "path": rel, "bytes": len(data)}
    if links:
        if direction == "push":
            pairs = [[_join(guest, r), check_link(r, source[r].target or "")] for r in links]
            body = json.dumps({"remove": [], "mkdirs": [], "links": pairs}).encode()
            await _python(ops, name, [GUEST_APPLY_SCRIPT, guest], body)
        else:
            for rel in links:
                await asyncio.to_thread(_link_host, host, rel, source[rel].target or "")
        for rel in links:
            yield {"type": "file", "action": "linked", "path": rel, "bytes": 0}
    yield {
        "type": "done", "direction": direction, "sent": files + links, "skipped": p.skip,
        "removed": p.remove, "dirs": [r for r, _ in mkdirs], "bytes": sent_bytes,
        "seconds": round(time.monotonic() - began, 3),
    }  # fmt: skip


def summary(events: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``done`` event of a finished transfer (``{}`` if it never finished)."""
    return dict(next((e for e in reversed(events) if e.get("type") == "done"), {}))
