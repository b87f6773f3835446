"""Build and run the Go yamux peer (tests/peers/goyamux/main.go); also runs other peer processes.

The Go program is built once per content: the binary lives in a cache directory under a name
keyed by the SHA-256 of main.go, the hashicorp/yamux sources and the Go version, and the build
runs under an exclusive file lock, so parallel test workers and the benchmark share one build.

``PeerProcesses`` starts peer processes (the Go peer, ``python -m virga``) with asyncio,
collects their stdout lines and stderr, and kills whatever is still running on ``close()``;
``logs()`` gives what each one printed, for the report of a failed test.

This module does not import pytest: the benchmark uses it too.  Test fixtures turn
``GoUnavailable`` into ``require(...)`` skips/failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "GOPATH",
    "SOURCE",
    "YAMUX_SOURCE",
    "GoUnavailable",
    "PeerProcess",
    "PeerProcesses",
    "build",
    "cache_dir",
    "virga_command",
]

SOURCE = Path(__file__).resolve().parent / "goyamux" / "main.go"
GOPATH = Path("/usr/share/gocode")
YAMUX_SOURCE = GOPATH / "src" / "github.com" / "hashicorp" / "yamux"
REPO_ROOT = Path(__file__).resolve().parents[2]


class GoUnavailable(RuntimeError):
    """Go or Debian's hashicorp/yamux sources are missing, or the build failed."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "cargobay-test"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _content_key(go: str) -> str:
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    for src in sorted(YAMUX_SOURCE.glob("*.go")):
        h.update(src.name.encode())
        h.update(src.read_bytes())
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
    h.update(version.stdout.encode())
    return h.hexdigest()[:16]


def build(go: str | None = None) -> Path:
    """Build the Go peer (or reuse the cached build) and return the binary's path."""
    go = go or shutil.which("go")
    if go is None:
        raise GoUnavailable("go not found (Debian: apt-get install golang-go)")
    if not YAMUX_SOURCE.is_dir():
        raise GoUnavailable(
            f"hashicorp/yamux sources not found at {YAMUX_SOURCE} "
            "(Debian: apt-get install golang-github-hashicorp-yamux-dev)"
        )
    cache = cache_dir()
    binary = cache / f"goyamux-{_content_key(go)}"
    if binary.exists():
        return binary
    with open(cache / "goyamux.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():  # another process built it while we waited
            return binary
        env = dict(os.environ, GOPATH=str(GOPATH), GO111MODULE="off", CGO_ENABLED="0")
        env.setdefault("GOCACHE", str(cache / "gocache"))
        tmp = binary.with_name(binary.name + ".tmp")
        result = subprocess.run(
            [go, "build", "-o", str(tmp), SOURCE.name],
            cwd=SOURCE.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise GoUnavailable(f"go build of {SOURCE} failed:\n{result.stderr}")
        tmp.replace(binary)
    return binary


def virga_command(*args: str) -> list[str]:
    """argv for ``python -m virga ARGS`` with this interpreter."""
    return [sys.executable, "-m", "virga", *args]


@dataclass
class PeerProcess:
    """One running peer: its argv, stdout lines so far, and stderr."""

    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() when each line came
    stderr: bytearray = field(default_factory=bytearray)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _stdout_done: bool = False

    def start_readers(self) -> None:
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for raw in self.proc.stdout:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.times.append(time.monotonic())
                self._changed.set()
        finally:
            self._stdout_done = True
            self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace")

    async def wait_line(self, prefix: str, within: float = 10.0) -> str:
        """The first stdout line starting with ``prefix`` (waits for it)."""
        return self.lines[await self.wait_line_index(prefix, within)]

    async def wait_line_index(self, prefix: str, within: float = 10.0) -> int:
        """Index (into ``lines`` and ``times``) of the first line starting with ``prefix``."""
        async with asyncio.timeout(within):
            while True:
                for i, line in enumerate(self.lines):
                    if line.startswith(prefix):
                        return i
                if self._stdout_done:
                    raise AssertionError(
                        f"{self.name} ended (exit {await self.proc.wait()}) without a line "
                        f"starting with {prefix!r}; stdout={self.lines!r} "
                        f"stderr={self.stderr_text!r}"
                    )
                self._changed.clear()
                await self._changed.wait()

    async def finish(self, within: float = 60.0) -> int:
        """Wait for the process to exit and for its output to be read; return the exit code."""
        async with asyncio.timeout(within):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code

    async def stop(self) -> None:
        """Kill the process if it still runs and collect its output."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(TimeoutError):
            await self.finish(within=5.0)

    def log(self) -> str:
        code = self.proc.returncode
        return (
            f"--- {self.name} (exit {code}): {' '.join(self.argv)}\n"
            f"stdout:\n" + "\n".join(self.lines) + f"\nstderr:\n{self.stderr_text}"
        )


class PeerProcesses:
    """A factory that starts peer processes and cleans all of them up."""

    def __init__(self) -> None:
        self.started: list[PeerProcess] = []

    async def start(
        self, argv: Sequence[str], *, name: str | None = None, env: dict[str, str] | None = None
    ) -> PeerProcess:
        full_env = dict(os.environ)
        src = str(REPO_ROOT / "src")
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, full_env.get("PYTHONPATH", "")) if p
        )
        if env:
            full_env.update(env)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
        )
        peer = PeerProcess(name or Path(argv[0]).name, list(argv), proc)
        peer.start_readers()
        self.started.append(peer)
        return peer

    async def run(self, argv: Sequence[str], *, within: float = 60.0) -> PeerProcess:
        """Start a process and wait for it to exit (its exit code is ``proc.returncode``)."""
        peer = await self.start(argv)
        try:
            await peer.finish(within)
        except TimeoutError as err:
            await peer.stop()
            raise AssertionError(f"{peer.name} did not finish in {within}s\n{peer.log()}") from err
        return peer

    async def close(self) -> None:
        for peer in self.started:
            await peer.stop()

    def logs(self) -> str:
        return "\n".join(peer.log() for peer in self.started)
