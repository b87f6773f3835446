"""The host programs an image build runs, and how it runs them.

Every tool is looked up before the build starts, so a missing one fails at once with the
Debian package that provides it, not half-way through a debootstrap.  ``run`` turns a
failed command into an ``ImageError`` that names the command and ends with the last lines
of its output; ``stream`` does the same for long commands whose output drives progress.
Commands' output also goes to the build log, whose path the errors mention.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from cargobay.errors import ImageError

__all__ = [
    "BUILD_TOOLS",
    "DEBIAN_PACKAGES",
    "ToolRunner",
    "find_tool",
    "require_root",
    "require_tools",
]

DEBIAN_PACKAGES: Mapping[str, str] = {
    "apt-cache": "apt",
    "apt-get": "apt",
    "chroot": "coreutils",
    "cp": "coreutils",
    "debootstrap": "debootstrap",
    "debugfs": "e2fsprogs",
    "depmod": "kmod",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "mke2fs": "e2fsprogs",
    "qemu-system-x86_64": "qemu-system-x86",
    "zstd": "zstd",
}
"""Debian package of each host tool the images code may run."""

BUILD_TOOLS = (
    "apt-cache",
    "apt-get",
    "chroot",
    "cp",
    "debootstrap",
    "depmod",
    "dpkg-deb",
    "mke2fs",
    "zstd",
)
"""What ``build_image`` needs on the host."""

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_TAIL_LINES = 25


def find_tool(name: str, search_path: str | None = None) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (a non-root PATH often
    lacks them, and mke2fs, depmod and debootstrap live there)."""
    path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    dirs = [d for d in path.split(os.pathsep) if d]
    if search_path is None:
        dirs += [d for d in _SBIN if d not in dirs]
    return shutil.which(name, path=os.pathsep.join(dirs))


def require_tools(names: Iterable[str], search_path: str | None = None) -> dict[str, str]:
    """The absolute path of each tool; an ``ImageError`` listing every missing one."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        path = find_tool(name, search_path)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in missing})
        listed = ", ".join(
            f"{name} (Debian package {DEBIAN_PACKAGES.get(name, name)})" for name in missing
        )
        raise ImageError(
            f"building an image needs programs that are not installed: {listed}; "
            f"install them with `sudo apt-get install {' '.join(packages)}` "
            "(or run scripts/setup.sh)"
        )
    return found


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ImageError(
            f"{what} needs root (debootstrap, chroot and the files' owners in the root image "
            "need it); run the build as root, e.g. `sudo cargobay image build`, or through "
            "a cargobayd running as root"
        )


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL_LINES:])


class ToolRunner:
    """Runs host tools for one build, appending everything they print to ``log``."""

    def __init__(self, tools: Mapping[str, str], log: TextIO | None = None) -> None:
        self._tools = tools
        self._log = log
        self.log_path: str | None = getattr(log, "name", None) if log is not None else None

    def _argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        first = str(argv[0])
        return [self._tools.get(first, first), *(str(arg) for arg in argv[1:])]

    def _record(self, argv: Sequence[str], output: str) -> None:
        if self._log is not None:
            self._log.write(f"$ {' '.join(argv)}\n{output}")
            if output and not output.endswith("\n"):
                self._log.write("\n")
            self._log.flush()

    def _failure(self, argv: Sequence[str], code: int, output: str, what: str) -> ImageError:
        where = f" (full log: {self.log_path})" if self.log_path else ""
        return ImageError(
            f"{what} failed: `{' '.join(argv)}` exited with status {code}{where}\n{_tail(output)}"
        )

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        what: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = self._argv(argv)
        try:
            done = subprocess.run(
                args,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as err:
            raise ImageError(f"{what} failed: cannot run {args[0]}: {err}") from err
        self._record(args, done.stdout)
        if check and done.returncode != 0:
            raise self._failure(args, done.returncode, done.stdout, what)
        return done

    def stream(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        what: str,
        on_line: Callable[[str], None],
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Run a long command, handing each output line to ``on_line`` as it comes."""
        args = self._argv(argv)
        lines: list[str] = []
        if self._log is not None:
            self._log.write(f"$ {' '.join(args)}\n")
        try:
            proc = subprocess.Popen(
                args,
                env=None if env is None else {**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as err:
            raise ImageError(f"{what} failed: cannot run {args[0]}: {err}") from err
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                del lines[:-200]
                if self._log is not None:
                    self._log.write(line)
                on_line(line.rstrip("\n"))
            code = proc.wait()
        except BaseException:
            # SIGTERM first: debootstrap's exit trap unmounts the /proc and /sys it
            # mounted in the target, which a SIGKILL would leave behind.
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            if self._log is not None:
                self._log.flush()
        if code != 0:
            raise self._failure(args, code, "".join(lines), what)
