"""The Python environment of a locally deployed app: find a Python, make a venv, pip install.

MaiBot is a Python project: the local deploy mode needs an interpreter new enough
(>= 3.10), a venv of its own and its requirements installed, with progress shown.

API (asyncio; each step is a subprocess)::

    py = await find_python((3, 10))                 # -> PythonInfo(path, version, ...)
    venv_python = await create_venv(py, instance_dir / "venv")
    await pip_install(instance_dir / "venv", requirements, on_line=print,
                      no_index=True, find_links=[wheels])     # offline installs for tests
    venv_python_path(instance_dir / "venv")         # bin/python (Scripts\\python.exe on Windows)

Errors are :class:`~cargobay.errors.PythonEnvError` with pip's last lines in the message; a
venv whose creation failed is removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from cargobay.errors import InvalidInput, PythonEnvError

LineCallback = Callable[[str], None]
CANDIDATES = ("python3.13", "python3.12", "python3.11", "python3.10", "python3", "python")
_PROBE = (
    "import json, sys, venv, ensurepip; "
    "print(json.dumps([list(sys.version_info[:3]), sys.implementation.name, sys.executable]))"
)


class PythonInfo(BaseModel):
    path: Path
    version: tuple[int, int, int]
    implementation: str

    @property
    def version_text(self) -> str:
        return ".".join(str(n) for n in self.version)


def venv_python_path(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


async def _run(
    argv: Sequence[str | Path], on_line: LineCallback | None = None, *, keep: int = 20
) -> tuple[int, list[str]]:
    """Run argv, stream its merged output lines to on_line; returns (code, last lines)."""
    proc = await asyncio.create_subprocess_exec(
        *[str(a) for a in argv],
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1"},
    )
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=keep)
    try:
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            tail.append(line)
            if on_line is not None and line:
                on_line(line)
        return await proc.wait(), list(tail)
    finally:
        if proc.returncode is None:  # cancelled: do not leave pip running
            proc.kill()
            await proc.wait()


async def probe(executable: Path) -> PythonInfo | None:
    """What ``executable`` is, or None if it is not a usable CPython/PyPy with venv."""
    try:
        code, lines = await _run([executable, "-I", "-c", _PROBE])
    except OSError:
        return None
    if code != 0 or not lines:
        return None
    try:
        version, impl, _ = json.loads(lines[-1])
        return PythonInfo(path=executable, version=tuple(version), implementation=impl)
    except (ValueError, TypeError):
        return None


def _executables(names: Sequence[str], search_path: str | None) -> list[Path]:
    """The distinct executables (by real path) the names find on the search path."""
    seen: set[str] = set()
    result: list[Path] = []
    for name in names:
        where = shutil.which(name, path=search_path)
        if where is not None and (real := os.path.realpath(where)) not in seen:
            seen.add(real)
            result.append(Path(where))
    return result


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


async def find_python(
    minimum: tuple[int, int] = (3, 10),
    *,
    search_path: str | None = None,
    names: Sequence[str] = CANDIDATES,
) -> PythonInfo:
    """The newest Python >= ``minimum`` found under the names on PATH (or ``search_path``)."""
    found: list[PythonInfo] = []
    for where in _executables(names, search_path):
        info = await probe(where)
        if info is not None and info.version[:2] >= minimum:
            found.append(info)
    if not found:
        wanted = ".".join(str(n) for n in minimum)
        raise PythonEnvError(
            f"no Python >= {wanted} with the venv module found on PATH; install one "
            "(e.g. apt install python3 python3-venv) or use the Docker deploy mode"
        )
    return max(found, key=lambda i: i.version)


async def create_venv(
    python: PythonInfo | Path, venv_dir: Path, *, on_line: LineCallback | None = None
) -> Path:
    """Create a venv (with pip) at the new path ``venv_dir``; returns its python."""
    executable = python.path if isinstance(python, PythonInfo) else python
    if _exists(venv_dir):
        raise PythonEnvError(f"{venv_dir} already exists; remove it to create a new venv")
    code, tail = await _run([executable, "-m", "venv", venv_dir], on_line)
    if code != 0:
        shutil.rmtree(venv_dir, ignore_errors=True)
        raise PythonEnvError(
            f"creating a venv with {executable} failed (exit {code}): " + " | ".join(tail[-5:])
        )
    return venv_python_path(venv_dir)


async def pip_install(
    venv_dir: Path,
    requirements: Path,
    *,
    on_line: LineCallback | None = None,
    index_url: str | None = None,
    no_index: bool = False,
    find_links: Sequence[Path | str] = (),
    extra_args: Sequence[str] = (),
) -> None:
    """``pip install -r requirements`` inside the venv, each output line to ``on_line``."""
    python = venv_python_path(venv_dir)
    if not _exists(python):
        raise PythonEnvError(f"{venv_dir} is not a venv (no {python})")
    if not _exists(requirements):
        raise InvalidInput(f"{requirements}: no such requirements file")
    argv: list[str | Path] = [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "-r",
        requirements,
    ]
    if index_url:
        if not index_url.startswith(("http://", "https://", "file://")):
            raise InvalidInput(f"not an index URL: {index_url!r}")
        argv += ["--index-url", index_url]
    if no_index:
        argv.append("--no-index")
    for link in find_links:
        argv += ["--find-links", str(link)]
    argv += list(extra_args)
    code, tail = await _run(argv, on_line)
    if code != 0:
        raise PythonEnvError(
            f"pip install -r {requirements} failed (exit {code}): " + " | ".join(tail[-5:])
        )
