"""cargobay.apps.pyenv with real interpreters, a real venv and an offline pip install of a
tiny wheel the test writes itself (no index, no network)."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import zipfile
from pathlib import Path

import pytest

from cargobay.apps.pyenv import create_venv, find_python, pip_install, probe, venv_python_path
from cargobay.errors import InvalidInput, PythonEnvError


def _wheel(directory: Path, name: str = "tiny_pkg", version: str = "1.0") -> Path:
    dist = f"{name}-{version}.dist-info"
    project = name.replace("_", "-")
    metadata = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
    files = {
        f"{name}/__init__.py": b"ANSWER = 42\n",
        f"{dist}/METADATA": metadata.encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},sha256={digest(d)},{len(d)}\n" for p, d in files.items())
    record += f"{dist}/RECORD,,\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", record)
    return wheel


async def test_find_python_prefers_the_newest_suitable(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(sys.executable)
    fake = bin_dir / "python3.12"
    fake.write_text("#!/bin/sh\nexit 1\n")  # a broken interpreter is skipped
    fake.chmod(0o755)
    info = await find_python((3, 10), search_path=str(bin_dir))
    assert info.path == bin_dir / "python3.11"
    assert info.version[:2] == sys.version_info[:2]
    with pytest.raises(PythonEnvError, match=r"no Python >= 3\.99"):
        await find_python((3, 99), search_path=str(bin_dir))
    assert await probe(fake) is None
    assert await probe(tmp_path / "missing") is None


async def test_venv_and_offline_pip_install_with_progress(tmp_path: Path) -> None:
    info = await find_python((3, 10), search_path=os.path.dirname(sys.executable))
    venv = tmp_path / "venv"
    python = await create_venv(info, venv)
    assert python == venv_python_path(venv)
    assert python.exists()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    req = tmp_path / "requirements.txt"
    req.write_text("tiny-pkg==1.0\n")
    lines: list[str] = []
    await pip_install(venv, req, on_line=lines.append, no_index=True, find_links=[wheels])
    assert any("Successfully installed tiny-pkg-1.0" in line for line in lines)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert (site / "tiny_pkg" / "__init__.py").read_text() == "ANSWER = 42\n"

    req.write_text("tiny-pkg==2.0\n")
    with pytest.raises(PythonEnvError, match=r"failed .*No matching distribution"):
        await pip_install(venv, req, no_index=True, find_links=[wheels])
    with pytest.raises(PythonEnvError, match="already exists"):
        await create_venv(info, venv)
    with pytest.raises(InvalidInput, match="no such requirements"):
        await pip_install(venv, tmp_path / "nope.txt")
    with pytest.raises(PythonEnvError, match="is not a venv"):
        await pip_install(tmp_path, req)


async def test_failed_venv_creation_leaves_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no venv module here' >&2\nmkdir -p \"$3\"\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(PythonEnvError, match="no venv module here"):
        await create_venv(broken, tmp_path / "venv")
    assert not (tmp_path / "venv").exists()
