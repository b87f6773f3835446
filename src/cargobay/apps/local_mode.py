"""Local mode: the app repository cloned on this host, a venv, and the app's processes
under a PTY.

This is the orchestration only; the mechanisms are separate modules written alongside
(``gitrepo``: dulwich clone/pull; ``pyenv``: find a Python, create a venv, pip install;
``ptyproc``: processes under a PTY with restart policy).  A deploy reports the steps
``clone``, ``python``, ``venv``, ``requirements``; when a mechanism module is not in this
build the step fails with an error that says so (and nothing is left behind).

A failed first clone removes the half-made checkout; a failed pull or install leaves the
previous checkout and venv in place.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

from cargobay.apps.models import Instance
from cargobay.apps.store import AppStore
from cargobay.apps.tasks import TaskReporter
from cargobay.errors import AppDeployError

__all__ = ["STEPS", "LocalRunner"]

STEPS = ("clone", "python", "venv", "requirements")


def _mechanism(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"cargobay.apps.{name}")
    except ImportError as err:
        raise AppDeployError(
            f"local mode needs cargobay.apps.{name}, which this build does not have yet; "
            "use deploy_mode docker"
        ) from err


class LocalRunner:
    """Local-mode instances of one daemon (processes are tracked in memory)."""

    def __init__(self) -> None:
        self._processes: dict[str, list[Any]] = {}

    async def deploy(
        self, apps: AppStore, instance: Instance, root: Path, report: TaskReporter
    ) -> str:
        checkout = root / "app"
        first = not checkout.exists()
        report.step("clone", f"cloning {instance.repo_url}")
        gitrepo = _mechanism("gitrepo")
        try:
            await gitrepo.clone_or_pull(  # the mechanism's API, see its docstring
                str(instance.repo_url),
                checkout,
                branch=instance.branch,
                progress=lambda f, m="": report.progress(f, m),
            )
        except BaseException:
            if first:
                shutil.rmtree(checkout, ignore_errors=True)
            raise
        report.step("python", "finding a suitable Python")
        pyenv = _mechanism("pyenv")
        python = await pyenv.find_python()
        report.step("venv", f"creating the venv with {python}")
        venv = await pyenv.create_venv(python, root / "venv")
        report.step("requirements", "installing requirements")
        requirements = checkout / "requirements.txt"
        if requirements.exists():
            await pyenv.pip_install(venv, requirements, log=report.log)
        current = apps.get(instance.id)
        paths = {**current.paths, "app": str(checkout), "venv": str(root / "venv")}
        apps.save(current.model_copy(update={"paths": paths, "status": "stopped"}))
        return f"{instance.name}: checked out and installed"

    async def start(self, apps: AppStore, instance: Instance, root: Path) -> Instance:
        _mechanism("ptyproc")
        raise AppDeployError("starting local-mode processes is not wired up yet")

    async def stop(self, instance: Instance) -> None:
        for process in self._processes.pop(instance.id, []):
            await process.stop()

    def processes(self, instance: Instance) -> list[dict[str, Any]]:
        return [p.info() for p in self._processes.get(instance.id, [])]

    async def logs(
        self, instance: Instance, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        for process in self._processes.get(instance.id, []):
            for line in process.output(tail=tail):
                yield {"type": "log", "service": process.name, "line": line}

    async def close(self) -> None:
        for instance_id in list(self._processes):
            for process in self._processes.pop(instance_id):
                await process.stop()
