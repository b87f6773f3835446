"""Fixtures for the compose engine's integration tests (real dockerd, docker-compose 1.29).

``stack`` is a factory: ``stack(text, name=...)`` writes a compose file into a fresh
directory and returns a ``Stack`` (its directory, project name, a loader, and helpers to
run docker-compose on it).  Every stack it made is taken down at the end (by us, then by
docker-compose as a fallback), so a failed test leaves nothing running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from cargobay.containers.compose.loader import LoadedProject, load_project
from cargobay.containers.compose.service import ComposeService
from tests.support import require_binary


@dataclass
class Stack:
    directory: Path
    name: str
    docker_url: str
    compose_bin: str | None
    events: list[dict[str, Any]] = field(default_factory=list)

    def load(self, **kwargs: Any) -> LoadedProject:
        kwargs.setdefault("env", {})
        return load_project(working_dir=self.directory, project_name=self.name, **kwargs)

    @property
    def service(self) -> ComposeService:
        return ComposeService(self.docker_url)

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def docker_compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run Debian's docker-compose 1.29 on this stack (same project name)."""
        assert self.compose_bin is not None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_HOST": self.docker_url,
               "HOME": str(self.directory)}  # fmt: skip
        result = subprocess.run(
            [self.compose_bin, "-p", self.name, *args],
            cwd=self.directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker-compose {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result


class StackFactory(Protocol):
    def __call__(self, text: str, *, files: dict[str, str] | None = None) -> Stack: ...


@pytest.fixture(scope="session")
def compose_bin() -> str:
    return require_binary("docker-compose", "Debian: apt-get install docker-compose")


@pytest.fixture
def stack(docker_engine: str, busybox_image: str, unique_name: str) -> Iterator[StackFactory]:
    made: list[Stack] = []
    compose = shutil.which("docker-compose")

    def factory(text: str, *, files: dict[str, str] | None = None) -> Stack:
        directory = Path(tempfile.mkdtemp(prefix="cb-compose-"))
        (directory / "docker-compose.yml").write_text(text.replace("BUSYBOX", busybox_image))
        for name, content in (files or {}).items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content.replace("BUSYBOX", busybox_image))
        name = unique_name.replace("-", "") + (str(len(made)) if made else "")
        one = Stack(directory, name, docker_engine, compose)
        made.append(one)
        return one

    yield factory
    for one in made:
        try:
            asyncio.run(one.service.down(one.load(), volumes=True, remove_orphans=True))
        except Exception:  # fall back to docker-compose, then leave it to the report
            if one.compose_bin:
                one.docker_compose("down", "-v", "--remove-orphans", "-t", "1", check=False)
        shutil.rmtree(one.directory, ignore_errors=True)
