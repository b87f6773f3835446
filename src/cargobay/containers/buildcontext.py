"""A build context directory as the tar stream ``POST /build`` wants, honouring
``.dockerignore``.

The rules follow the Docker CLI's: one pattern per line, ``#`` comments, blank lines
ignored, ``!`` re-includes, the last matching pattern wins, ``**`` matches any number of
directories, a pattern matching a directory excludes everything under it.  The
Dockerfile and ``.dockerignore`` themselves are always sent (the Engine needs the
first; the CLI does the same).  Owners are zeroed and mtimes kept, so a context that did
not change gives the same tar (and the Engine's build cache hits).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

from cargobay.errors import InvalidInput

__all__ = ["IgnoreRules", "tar_context"]


def _translate(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (filepath.Match plus ``**``) as a regex over a relative path."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidInput(f".dockerignore: unterminated '[' in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    # a pattern also matches everything below a matched directory
    return re.compile("".join(out) + "(?:/.*)?")


class IgnoreRules:
    """Parsed ``.dockerignore`` patterns; :meth:`excluded` answers for a relative path."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:].strip()
            line = os.path.normpath(line).replace(os.sep, "/").lstrip("/")
            if line == ".":
                continue
            self.rules.append((negate, _translate(line)))

    @classmethod
    def from_dir(cls, context: Path) -> IgnoreRules:
        path = context / ".dockerignore"
        if not path.is_file():
            return cls([])
        return cls(path.read_text(errors="replace").splitlines())

    def excluded(self, relative: str) -> bool:
        result = False
        for negate, pattern in self.rules:
            if pattern.fullmatch(relative):
                result = not negate
        return result

    @property
    def has_negations(self) -> bool:
        return any(negate for negate, _ in self.rules)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tar_context(context: Path, dockerfile: str = "Dockerfile") -> bytes:
    """The tar of ``context`` minus what ``.dockerignore`` excludes."""
    if not context.is_dir():
        raise InvalidInput(f"build context {context} is not a directory")
    rules = IgnoreRules.from_dir(context)
    keep = {dockerfile.removeprefix("./"), ".dockerignore"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(context):
            rel_root = os.path.relpath(root, context)
            rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/")
            dirs.sort()
            kept_dirs = []
            for name in dirs:
                rel = f"{rel_root}/{name}" if rel_root else name
                # a negation could re-include something below an excluded directory
                if rules.excluded(rel) and not rules.has_negations:
                    continue
                kept_dirs.append(name)
                if not rules.excluded(rel):
                    tar.add(os.path.join(root, name), arcname=rel, recursive=False, filter=_reset)
            dirs[:] = kept_dirs
            for name in sorted(files):
                rel = f"{rel_root}/{name}" if rel_root else name
                if rel not in keep and rules.excluded(rel):
                    continue
                tar.add(os.path.join(root, name), arcname=rel, recursive=False, filter=_reset)
    return buffer.getvalue()
