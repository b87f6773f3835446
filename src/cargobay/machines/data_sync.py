"""Copying trees between the host and a machine: the rules, without any I/O on the guest.

``data NAME push|pull|sync HOST_PATH GUEST_PATH`` (``machines.data_transfer`` runs it)
compares two *manifests*: relative POSIX path -> ``Entry`` (type, size, mode, sha256 of a
file, target of a symlink).  Entry ``""`` is the root itself: a directory
(then the other entries are its tree) or a single file.

``plan`` decides what to send: everything (push, pull) or only what differs in type, size,
mode, hash or link target (sync), and with ``delete`` what the target has that the source
lacks.  A target entry in the way of a different kind (a symlink where a directory goes)
is always removed first, so nothing is written through a link.

No path may escape its root, on either side (``check_member``, ``check_link``): a
manifest member is relative, non-empty components, no ``..``, no NUL (a guest's manifest
is untrusted); a source symlink's target must stay inside the root once resolved
against the link's directory (an absolute target never does).  A violation refuses the whole
transfer before anything is written (``InvalidInput`` naming the member).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from cargobay.errors import InvalidInput

__all__ = [
    "GUEST_APPLY_SCRIPT",
    "GUEST_MANIFEST_SCRIPT",
    "Entry",
    "Plan",
    "check_link",
    "check_member",
    "host_manifest",
    "plan",
]

Kind = Literal["file", "dir", "symlink"]


class Entry(BaseModel):
    type: Kind
    size: int = 0
    mode: int = 0o644
    sha256: str | None = None
    target: str | None = None


class Plan(BaseModel):
    """What a transfer does, in order: ``remove`` (deepest first), ``mkdirs`` (shallowest
    first), ``send`` (files and symlinks); ``skip`` is what was already up to date."""

    remove: list[str] = []
    mkdirs: list[str] = []
    send: list[str] = []
    skip: list[str] = []
    bytes: int = 0


def check_member(rel: str) -> str:
    """``rel`` if it is a safe relative member name (``""`` is the root itself)."""
    if rel == "":
        return rel
    if "\0" in rel or rel.startswith("/"):
        raise InvalidInput(f"refused: member {rel!r} is an absolute path")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"refused: member {rel!r} escapes its root ('..' or empty component)")
    return rel


def check_link(rel: str, target: str) -> str:
    """``target`` if the symlink ``rel`` -> ``target`` stays inside the root."""
    if not target or target.startswith("/") or "\0" in target:
        raise InvalidInput(f"refused: symlink {rel!r} -> {target!r} points outside the target")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise InvalidInput(f"refused: symlink {rel!r} -> {target!r} points outside the target")
    return target


def check_manifest(manifest: Mapping[str, Entry]) -> None:
    for rel, entry in manifest.items():
        check_member(rel)
        if entry.type == "symlink":
            check_link(rel, entry.target or "")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _host_entry(path: Path, with_hash: bool) -> Entry | None:
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        return Entry(type="symlink", size=len(target), mode=0o777, target=target)
    if stat.S_ISDIR(st.st_mode):
        return Entry(type="dir", mode=mode)
    if stat.S_ISREG(st.st_mode):
        digest = _sha256(path) if with_hash else None
        return Entry(type="file", size=st.st_size, mode=mode, sha256=digest)
    return None  # sockets, fifos, devices: not transferred


def host_manifest(root: Path, with_hash: bool = True) -> dict[str, Entry]:
    """The tree under ``root`` (symlinks not followed; ``{}`` if it does not exist)."""
    if not os.path.lexists(root):
        return {}
    if not root.is_dir():  # a file (or a link to one): one entry, the target path itself
        top = _host_entry(root.resolve(), with_hash)
        return {"": top} if top is not None else {}
    out: dict[str, Entry] = {"": Entry(type="dir", mode=stat.S_IMODE(root.stat().st_mode))}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = base / name
            entry = _host_entry(full, with_hash)
            if entry is not None:
                out[full.relative_to(root).as_posix()] = entry
    return out


def _same(a: Entry, b: Entry) -> bool:
    if a.type != b.type:
        return False
    if a.type == "symlink":
        return a.target == b.target
    if a.type == "dir":
        return a.mode == b.mode
    return a.size == b.size and a.sha256 == b.sha256 and a.mode == b.mode


def _depth(rel: str) -> int:
    return rel.count("/") + (1 if rel else 0)


def plan(
    source: Mapping[str, Entry],
    target: Mapping[str, Entry],
    *,
    only_changed: bool,
    delete: bool = False,
) -> Plan:
    """What to do so ``target`` matches ``source``.  Every member name is checked; the
    source's links must stay inside; the target's links may point anywhere (they are
    never followed: one in the way of a directory or file is removed first)."""
    check_manifest(source)
    for rel in target:
        check_member(rel)
    remove: set[str] = set()
    for rel, have in target.items():
        want = source.get(rel)
        if want is None:
            if delete:
                remove.add(rel)
        elif want.type != have.type:
            remove.add(rel)
    # a removed directory takes its contents with it
    remove = {r for r in remove if not any(r.startswith(o + "/") for o in remove if o != r)}
    p = Plan()
    p.remove = sorted(remove, key=lambda r: (-_depth(r), r))

    def gone(rel: str) -> bool:
        return any(rel == r or rel.startswith(r + "/") for r in remove)

    for rel in sorted(source, key=lambda r: (_depth(r), r)):
        want = source[rel]
        current = None if gone(rel) else target.get(rel)
        if only_changed and current is not None and _same(want, current):
            p.skip.append(rel)
        elif want.type == "dir":
            p.mkdirs.append(rel)
        else:
            p.send.append(rel)
            p.bytes += want.size if want.type == "file" else 0
    return p


GUEST_MANIFEST_SCRIPT = r"""
import hashlib, json, os, stat, sys
root, with_hash = sys.argv[1], sys.argv[2] == "1"
def entry(path):
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        t = os.readlink(path)
        return {"type": "symlink", "size": len(t), "mode": 511, "target": t}
    if stat.S_ISDIR(st.st_mode):
        return {"type": "dir", "mode": mode}
    if stat.S_ISREG(st.st_mode):
        d = None
        if with_hash:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            d = h.hexdigest()
        return {"type": "file", "size": st.st_size, "mode": mode, "sha256": d}
    return None
out = {}
if os.path.lexists(root):
    if os.path.isdir(root):
        out[""] = {"type": "dir", "mode": stat.S_IMODE(os.stat(root).st_mode)}
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                full = os.path.join(dirpath, name)
                e = entry(full)
                if e is not None:
                    out[os.path.relpath(full, root).replace(os.sep, "/")] = e
    else:
        e = entry(root)
        if e is not None:
            out[""] = e
json.dump(out, sys.stdout)
"""
"""Run in the guest as ``python3 -c SCRIPT ROOT 1|0``: prints the manifest as JSON."""

GUEST_APPLY_SCRIPT = r"""
import json, os, shutil, sys
root = os.path.realpath(sys.argv[1])
ops = json.load(sys.stdin)
def inside(path):
    parent = os.path.realpath(os.path.dirname(path))
    if parent != root and not parent.startswith(root + "/"):
        raise SystemExit("refused: %s is outside %s" % (path, root))
for path in ops["remove"]:
    inside(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
for path, mode in ops["mkdirs"]:
    if mode is None:
        os.makedirs(path, exist_ok=True)
        continue
    inside(path)
    if not os.path.isdir(path):
        os.mkdir(path)
    os.chmod(path, mode)
for path, target in ops["links"]:
    inside(path)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)
"""
"""Run in the guest as ``python3 -c SCRIPT ROOT`` with ``{"remove": [...], "mkdirs":
[[path, mode]], "links": [[path, target]]}`` on stdin; every parent must resolve inside
ROOT."""
